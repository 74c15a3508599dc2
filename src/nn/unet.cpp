#include "ssn/nn/unet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/instancenorm.h>

#include "ssn/nn/layer_trace.h"
#include "ssn/nn/nd_layers.h"

namespace ssn::nn {
namespace {

// One convolution (kernel^D, padding to keep the size, no bias before a normalisation) ->
// normalisation -> relu, appended to `block`.
template <size_t D>
void add_conv_layer(torch::nn::Sequential& block, int64_t in, int64_t out, int64_t kernel,
                    const UNetOptions& options) {
  using L = NdLayers<D>;
  const bool biased = options.normalisation() == Normalisation::kNone;
  block->push_back(
      typename L::Conv(typename L::ConvOptions(in, out, kernel).padding(kernel / 2).bias(biased)));
  if (options.normalisation() == Normalisation::kBatch) {
    block->push_back(typename L::BatchNorm(typename L::BatchNormOptions(out)
                                               .eps(options.batch_norm_epsilon())
                                               .momentum(options.batch_norm_momentum())));
  } else if (options.normalisation() == Normalisation::kInstance) {
    block->push_back(typename L::InstanceNorm(typename L::InstanceNormOptions(out).affine(true)));
  }
  block->push_back(torch::nn::ReLU());
}

// convs_per_level x (3^D convolution, padding 1 -> normalisation -> relu).
template <size_t D>
torch::nn::Sequential conv_block(int64_t in, int64_t out, const UNetOptions& options) {
  torch::nn::Sequential block;
  for (int64_t i = 0; i < options.convs_per_level(); ++i) {
    add_conv_layer<D>(block, i == 0 ? in : out, out, 3, options);
  }
  return block;
}

}  // namespace

Pooling parse_pooling(const std::string& name) {
  if (name == "max") return Pooling::kMax;
  if (name == "average") return Pooling::kAverage;
  TORCH_CHECK(false, "pooling must be \"max\" or \"average\", got \"", name, "\"");
}

Upsampling parse_upsampling(const std::string& name) {
  if (name == "linear") return Upsampling::kLinear;
  if (name == "linear_tf1") return Upsampling::kLinearTf1;
  TORCH_CHECK(false, "upsampling must be \"linear\" or \"linear_tf1\", got \"", name, "\"");
}

DecoderWidths parse_decoder_widths(const std::string& name) {
  if (name == "level") return DecoderWidths::kLevel;
  if (name == "level_below") return DecoderWidths::kLevelBelow;
  TORCH_CHECK(false, "decoder_widths must be \"level\" or \"level_below\", got \"", name, "\"");
}

torch::Tensor upsample2_tf1(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (int64_t axis = 2; axis < x.dim(); ++axis) {
    const int64_t n = y.size(axis);
    // Odd outputs: the mean of input i and i + 1, the last one repeating the edge.
    const torch::Tensor next =
        torch::cat({y.narrow(axis, 1, n - 1), y.narrow(axis, n - 1, 1)}, axis);
    y = torch::stack({y, (y + next) * 0.5}, axis + 1).flatten(axis, axis + 1);
  }
  return y;
}

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
  for (int64_t w : options_.recombination()) {
    TORCH_CHECK(w >= 1, "UNet: every entry of recombination must be >= 1, got ", w);
  }
  TORCH_CHECK(options_.batch_norm_epsilon() > 0 && options_.batch_norm_momentum() >= 0 &&
                  options_.batch_norm_momentum() <= 1,
              "UNet: batch norm needs epsilon > 0 and momentum in [0, 1], got ",
              options_.batch_norm_epsilon(), " and ", options_.batch_norm_momentum());
  const auto levels = static_cast<int64_t>(filters.size());
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t in = level == 0 ? options_.in_channels() : filters[level - 1];
    encoder_->push_back(conv_block<D>(in, filters[level], options_));
  }
  for (int64_t level = 0; level + 1 < levels; ++level) {
    // Input: the upsampled level below (the decoder's output there, or the bottom encoder level)
    // concatenated with this level's skip connection.
    const auto below = static_cast<size_t>(level + 1);
    const int64_t from_below = level + 2 < levels ? options_.decoder_width(below) : filters[below];
    decoder_->push_back(conv_block<D>(
        from_below + filters[level], options_.decoder_width(static_cast<size_t>(level)), options_));
  }
  register_module("encoder", encoder_);
  register_module("decoder", decoder_);
  if (!options_.recombination().empty()) {
    recombination_ = torch::nn::Sequential();
    int64_t in = options_.decoder_out_channels();
    for (int64_t width : options_.recombination()) {
      add_conv_layer<D>(recombination_, in, width, 1, options_);
      in = width;
    }
    register_module("recombination", recombination_);
  }
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
  LayerTrace* trace = LayerTrace::active();
  std::vector<torch::Tensor> skips;
  torch::Tensor x = image;
  for (int64_t level = 0; level < levels; ++level) {
    if (level > 0) {
      const bool average = options_.pooling() == Pooling::kAverage;
      if constexpr (D == 2) {
        x = average ? torch::avg_pool2d(x, 2) : torch::max_pool2d(x, 2);
      } else {
        x = average ? torch::avg_pool3d(x, 2) : torch::max_pool3d(x, 2);
      }
      if (trace) {
        trace->record("encoder." + std::to_string(level) + " (input)",
                      average ? "AvgPool" : "MaxPool", x);
      }
    }
    x = traced_forward(*encoder_[level]->as<torch::nn::Sequential>(), x);
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
    x = options_.upsampling() == Upsampling::kLinearTf1 ? upsample2_tf1(x)
                                                        : F::interpolate(x, upsampling);
    x = torch::cat({x, skip}, /*dim=*/1);
    if (trace) {
      trace->record("decoder." + std::to_string(level) + " (input)", "Upsample + concat", x);
    }
    x = traced_forward(*decoder_[level]->as<torch::nn::Sequential>(), x);
  }
  if (recombination_) x = traced_forward(*recombination_, x);
  return x;
}

template class UNetImpl<2>;
template class UNetImpl<3>;

}  // namespace ssn::nn
