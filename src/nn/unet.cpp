#include "ssn/nn/unet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/instancenorm.h>

#include "ssn/nn/nd_layers.h"

namespace ssn::nn {
namespace {

// convs x (3^D convolution, padding 1 -> normalisation -> relu).
template <size_t D>
torch::nn::Sequential conv_block(int64_t in, int64_t out, const UNetOptions& options) {
  using L = NdLayers<D>;
  torch::nn::Sequential block;
  for (int64_t i = 0; i < options.convs_per_level(); ++i) {
    const bool biased = options.normalisation() == Normalisation::kNone;
    block->push_back(typename L::Conv(
        typename L::ConvOptions(i == 0 ? in : out, out, 3).padding(1).bias(biased)));
    if (options.normalisation() == Normalisation::kBatch) {
      block->push_back(typename L::BatchNorm(out));
    } else if (options.normalisation() == Normalisation::kInstance) {
      block->push_back(typename L::InstanceNorm(typename L::InstanceNormOptions(out).affine(true)));
    }
    block->push_back(torch::nn::ReLU());
  }
  return block;
}

}  // namespace

Normalisation parse_normalisation(const std::string& name) {
  if (name == "batch") return Normalisation::kBatch;
  if (name == "instance") return Normalisation::kInstance;
  if (name == "none") return Normalisation::kNone;
  TORCH_CHECK(false, "normalisation must be \"batch\", \"instance\" or \"none\", got \"", name,
              "\"");
}

template <size_t D>
UNetImpl<D>::UNetImpl(UNetOptions options) : options_(std::move(options)) {
  const auto& filters = options_.filters();
  TORCH_CHECK(options_.in_channels() >= 1, "UNet: in_channels must be >= 1, got ",
              options_.in_channels());
  TORCH_CHECK(!filters.empty(), "UNet: filters needs at least one level");
  for (int64_t f : filters) {
    TORCH_CHECK(f >= 1, "UNet: every entry of filters must be >= 1, got ", f);
  }
  TORCH_CHECK(options_.convs_per_level() >= 1, "UNet: convs_per_level must be >= 1, got ",
              options_.convs_per_level());
  const auto levels = static_cast<int64_t>(filters.size());
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t in = level == 0 ? options_.in_channels() : filters[level - 1];
    encoder_->push_back(conv_block<D>(in, filters[level], options_));
  }
  for (int64_t level = 0; level + 1 < levels; ++level) {
    // Input: the upsampled level below concatenated with this level's skip connection.
    decoder_->push_back(
        conv_block<D>(filters[level + 1] + filters[level], filters[level], options_));
  }
  register_module("encoder", encoder_);
  register_module("decoder", decoder_);
}

template <size_t D>
torch::Tensor UNetImpl<D>::forward(const torch::Tensor& image) {
  const auto levels = static_cast<int64_t>(options_.filters().size());
  TORCH_CHECK(image.dim() == static_cast<int64_t>(D) + 2 && image.size(1) == options_.in_channels(),
              "UNet: image must have shape [B, I = ", options_.in_channels(), ", *spatial] with ",
              D, " spatial dimensions, got ", image.sizes());
  const int64_t factor = int64_t{1} << (levels - 1);
  for (int64_t d = 2; d < image.dim(); ++d) {
    TORCH_CHECK(image.size(d) % factor == 0, "UNet: with ", levels,
                " levels every spatial size must be divisible by ", factor, ", got ",
                image.sizes());
  }
  std::vector<torch::Tensor> skips;
  torch::Tensor x = image;
  for (int64_t level = 0; level < levels; ++level) {
    if (level > 0) {
      x = D == 2 ? torch::max_pool2d(x, 2) : torch::max_pool3d(x, 2);
    }
    x = encoder_[level]->as<torch::nn::Sequential>()->forward(x);
    skips.push_back(x);
  }
  for (int64_t level = levels - 2; level >= 0; --level) {
    namespace F = torch::nn::functional;
    const auto& skip = skips[level];
    std::vector<int64_t> size(skip.sizes().begin() + 2, skip.sizes().end());
    auto upsampling = F::InterpolateFuncOptions().size(size).align_corners(false);
    if constexpr (D == 2) {
      upsampling.mode(torch::kBilinear);
    } else {
      upsampling.mode(torch::kTrilinear);
    }
    x = F::interpolate(x, upsampling);
    x = decoder_[level]->as<torch::nn::Sequential>()->forward(torch::cat({x, skip}, /*dim=*/1));
  }
  return x;
}

template class UNetImpl<2>;
template class UNetImpl<3>;

}  // namespace ssn::nn
