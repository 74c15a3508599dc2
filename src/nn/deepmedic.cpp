#include "ssn/nn/deepmedic.h"

#include <c10/util/Exception.h>

#include <sstream>

#include "ssn/nn/layer_trace.h"

namespace ssn::nn {
namespace {

// The reference's crop_center: per spatial axis a window of `size` starting at c / 2 - size / 2
// (not (c - size) / 2: the two differ for an even c and odd size).
torch::Tensor crop_center(torch::Tensor x, const std::vector<int64_t>& size) {
  for (size_t d = 0; d < size.size(); ++d) {
    const int64_t axis = 2 + static_cast<int64_t>(d);
    const int64_t current = x.size(axis);
    TORCH_CHECK(current >= size[d], "DeepMedic: cannot crop ", current, " voxels to ", size[d]);
    x = x.narrow(axis, current / 2 - size[d] / 2, size[d]);
  }
  return x;
}

// "path(5, 5, 5)0": the reference's module name of pathway `index` (str of the factor tuple).
std::string pathway_name(int64_t factor, size_t dims, size_t index) {
  std::ostringstream name;
  name << "path(";
  for (size_t d = 0; d < dims; ++d) name << (d ? ", " : "") << factor;
  name << ")" << index;
  return name.str();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

template <size_t D>
PreActBlockImpl<D>::PreActBlockImpl(int64_t in, int64_t out, int64_t kernel, double dropout,
                                    bool first)
    : kernel_(kernel), first_(first), residual_(in == out) {
  using NormOptions = torch::nn::BatchNormOptions;
  using ConvOptions = typename NdLayers<D>::ConvOptions;
  norm_ = register_module("norm", BatchNorm(NormOptions(in)));
  conv_ = register_module("conv", Conv(ConvOptions(in, out, kernel).bias(false)));
  prelu_ = register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(1)));
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
}

template <size_t D>
torch::Tensor PreActBlockImpl<D>::forward(const torch::Tensor& x) {
  torch::Tensor h = first_ ? x : dropout_->forward(prelu_->forward(norm_->forward(x)));
  torch::Tensor out = conv_->forward(h);
  if (residual_) {
    torch::Tensor shortcut = x;
    const int64_t trim = kernel_ / 2;
    for (size_t d = 0; d < D && trim > 0; ++d) {
      const int64_t axis = 2 + static_cast<int64_t>(d);
      shortcut = shortcut.narrow(axis, trim, shortcut.size(axis) - 2 * trim);
    }
    out = out + shortcut;
  }
  return out;
}

template <size_t D>
DeepMedicImpl<D>::DeepMedicImpl(DeepMedicOptions options) : options_(std::move(options)) {
  const auto& maps = options_.feature_maps();
  const auto& factors = options_.scale_factors();
  TORCH_CHECK(!maps.empty() && !factors.empty(),
              "DeepMedic: feature_maps and scale_factors must "
              "not be empty");
  for (int64_t factor : factors) {
    TORCH_CHECK(factor >= 1, "DeepMedic: scale factors must be >= 1, got ", factor);
  }
  TORCH_CHECK(options_.dropout().size() == options_.fully_connected().size() + 1,
              "DeepMedic: dropout needs fully_connected.size() + 1 = ",
              options_.fully_connected().size() + 1, " values, got ", options_.dropout().size());
  for (size_t p = 0; p < factors.size(); ++p) {
    auto pathway =
        register_module(pathway_name(factors[p], D, p), std::make_shared<torch::nn::Module>());
    auto path = pathway->register_module("path", std::make_shared<torch::nn::Module>());
    std::vector<std::shared_ptr<PreActBlockImpl<D>>> blocks;
    int64_t in = options_.in_channels();
    for (size_t b = 0; b < maps.size(); ++b) {
      // Index 0 of the reference's Sequential is the downsampling, which has no parameters.
      blocks.push_back(path->register_module(
          std::to_string(b + 1),
          std::make_shared<PreActBlockImpl<D>>(in, maps[b], 3, 0.0, /*first=*/b == 0)));
      in = maps[b];
    }
    pathways_.push_back(std::move(blocks));
  }
  auto fully_connected = register_module("fully_connected", std::make_shared<torch::nn::Module>());
  int64_t in = maps.back() * static_cast<int64_t>(factors.size());
  std::vector<int64_t> outs = options_.fully_connected();
  outs.push_back(maps.back());
  for (size_t b = 0; b < outs.size(); ++b) {
    fully_connected_.push_back(fully_connected->register_module(
        std::to_string(b),
        std::make_shared<PreActBlockImpl<D>>(in, outs[b], 1, options_.dropout()[b], false)));
    in = outs[b];
  }
}

template <size_t D>
int64_t DeepMedicImpl<D>::output_size(int64_t input) const {
  const int64_t s0 = options_.scale_factors().front();
  const int64_t shrink = 2 * static_cast<int64_t>(options_.feature_maps().size());
  const int64_t output = (input / s0 - shrink) * s0;
  TORCH_CHECK(output > 0, "DeepMedic: an input of ", input, " voxels is too small; the smallest ",
              "is ", (shrink + 1) * s0);
  return output;
}

template <size_t D>
int64_t DeepMedicImpl<D>::input_size_for(int64_t output) const {
  const int64_t s0 = options_.scale_factors().front();
  const int64_t shrink = 2 * static_cast<int64_t>(options_.feature_maps().size());
  return (ceil_div(std::max<int64_t>(output, 1), s0) + shrink) * s0;
}

template <size_t D>
int64_t DeepMedicImpl<D>::widest_layer() const {
  // The pathways' blocks work near the input size; the wider 1x1 blocks only at the (much
  // smaller) output size.
  int64_t widest = options_.in_channels();
  for (int64_t c : options_.feature_maps()) widest = std::max(widest, c);
  return widest;
}

template <size_t D>
torch::Tensor DeepMedicImpl<D>::forward(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == static_cast<int64_t>(D) + 2 && image.size(1) == options_.in_channels(),
              "DeepMedic: expected an image [B, ", options_.in_channels(), ", *spatial] with ", D,
              " spatial axes, got ", image.sizes());
  const int64_t shrink = 2 * static_cast<int64_t>(options_.feature_maps().size());
  std::vector<int64_t> output(D);
  for (size_t d = 0; d < D; ++d) output[d] = output_size(image.size(2 + d));
  std::vector<torch::Tensor> features;
  for (size_t p = 0; p < pathways_.size(); ++p) {
    const int64_t s = options_.scale_factors()[p];
    std::vector<int64_t> needed(D), upsampled(D);
    for (size_t d = 0; d < D; ++d) {
      needed[d] = (ceil_div(output[d], s) + shrink) * s;
      upsampled[d] = ceil_div(output[d], s) * s;
    }
    torch::Tensor x = crop_center(image, needed);
    for (size_t d = 0; d < D && s > 1; ++d) {  // strided slicing x[..., s/2::s]
      x = x.slice(2 + static_cast<int64_t>(d), s / 2, c10::nullopt, s);
    }
    LayerTrace* trace = LayerTrace::active();
    if (trace) {
      trace->record(pathway_name(s, D, p) + " (input)", s > 1 ? "Crop + subsample" : "Crop", x);
    }
    for (auto& block : pathways_[p]) {
      x = block->forward(x);
      if (trace) trace->record(*block, x);
    }
    for (size_t d = 0; d < D && s > 1; ++d) {  // nearest upsampling
      x = x.repeat_interleave(s, 2 + static_cast<int64_t>(d));
    }
    features.push_back(crop_center(x, output));
  }
  torch::Tensor x = torch::cat(features, /*dim=*/1);
  LayerTrace* trace = LayerTrace::active();
  if (trace) trace->record("fully_connected (input)", "Upsample + crop + concat", x);
  for (auto& block : fully_connected_) {
    x = block->forward(x);
    if (trace) trace->record(*block, x);
  }
  return x;
}

template class PreActBlockImpl<2>;
template class PreActBlockImpl<3>;
template class DeepMedicImpl<2>;
template class DeepMedicImpl<3>;

}  // namespace ssn::nn
