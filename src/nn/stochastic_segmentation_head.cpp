#include "ssn/nn/stochastic_segmentation_head.h"

#include <torch/nn/functional/activation.h>

#include "ssn/nn/layer_trace.h"
#include "ssn/nn/nd_layers.h"

namespace ssn::nn {

StochasticSegmentationHeadImpl::StochasticSegmentationHeadImpl(
    const StochasticSegmentationHeadOptions& options)
    : options_(options) {
  TORCH_CHECK(options_.in_channels() >= 1,
              "StochasticSegmentationHead: in_channels must be >= 1, got ", options_.in_channels());
  TORCH_CHECK(options_.num_classes() >= 2,
              "StochasticSegmentationHead: num_classes must be >= 2 (background included), got ",
              options_.num_classes());
  TORCH_CHECK(options_.rank() >= 0,
              "StochasticSegmentationHead: rank must be >= 0 (0 = diagonal covariance), got ",
              options_.rank());
  TORCH_CHECK(options_.epsilon() > 0, "StochasticSegmentationHead: epsilon must be > 0, got ",
              options_.epsilon());
  TORCH_CHECK(options_.dimension() == 2 || options_.dimension() == 3,
              "StochasticSegmentationHead: dimension must be 2 or 3, got ", options_.dimension());
  const int64_t in = options_.in_channels();
  const int64_t classes = options_.num_classes();
  const int64_t dims = options_.dimension();
  mean_l_ = pointwise_conv(dims, in, classes);
  register_module("mean_l", mean_l_.ptr());
  log_cov_diag_l_ = pointwise_conv(dims, in, classes);
  register_module("log_cov_diag_l", log_cov_diag_l_.ptr());
  if (options_.rank() > 0) {
    cov_factor_l_ = pointwise_conv(dims, in, classes * options_.rank(), options_.factor_bias());
    register_module("cov_factor_l", cov_factor_l_.ptr());
  }
}

std::vector<torch::Tensor> StochasticSegmentationHeadImpl::covariance_parameters() const {
  std::vector<torch::Tensor> parameters = log_cov_diag_l_.ptr()->parameters();
  if (!cov_factor_l_.is_empty()) {
    for (const auto& p : cov_factor_l_.ptr()->parameters()) parameters.push_back(p);
  }
  return parameters;
}

torch::Tensor StochasticSegmentationHeadImpl::mean_bias() const {
  return mean_l_.ptr()->named_parameters(/*recurse=*/false)["bias"];
}

torch::Tensor StochasticSegmentationHeadImpl::log_cov_diag_bias() const {
  return log_cov_diag_l_.ptr()->named_parameters(/*recurse=*/false)["bias"];
}

torch::Tensor StochasticSegmentationHeadImpl::cov_factor_weight() const {
  if (cov_factor_l_.is_empty()) return {};
  return cov_factor_l_.ptr()->named_parameters(/*recurse=*/false)["weight"];
}

HeadOutput StochasticSegmentationHeadImpl::forward(const torch::Tensor& features,
                                                   const torch::Tensor& mask) {
  const int64_t dims = options_.dimension();
  TORCH_CHECK(features.defined() && features.dim() == dims + 2 &&
                  features.size(1) == options_.in_channels(),
              "StochasticSegmentationHead: features must have shape [B, F = ",
              options_.in_channels(), ", *spatial] with ", dims, " spatial dimensions, got ",
              features.defined() ? features.sizes() : at::IntArrayRef{});
  const int64_t batch = features.size(0);
  const int64_t rank = options_.rank();
  const std::vector<int64_t> spatial(features.sizes().begin() + 2, features.sizes().end());

  const torch::Tensor activated = torch::relu(features);
  const torch::Tensor mean_logits = mean_l_.forward(activated);  // [B, C, *spatial]
  torch::Tensor cov_diag = log_cov_diag_l_.forward(activated).exp() + options_.epsilon();
  torch::Tensor cov_factor_maps;  // [B, C*R, *spatial]
  if (rank > 0) {
    cov_factor_maps = cov_factor_l_.forward(activated);
  } else {
    std::vector<int64_t> empty_shape = {batch, 0};
    empty_shape.insert(empty_shape.end(), spatial.begin(), spatial.end());
    cov_factor_maps = torch::zeros(empty_shape, features.options());
  }

  torch::Tensor mask_values = torch::ones({1}, features.options());
  if (mask.defined()) {
    std::vector<int64_t> expected = {batch};
    expected.insert(expected.end(), spatial.begin(), spatial.end());
    TORCH_CHECK(mask.sizes() == at::IntArrayRef(expected),
                "StochasticSegmentationHead: mask must have shape [B, *spatial] = ",
                at::IntArrayRef(expected), ", got ", mask.sizes());
    mask_values = mask.to(features.options()).unsqueeze(1);  // [B, 1, *spatial]
  }
  // The background covariance tends to blow up, so the reference zeroes P and keeps only eps of D
  // outside the region of interest; eps is added a second time after masking, as it does.
  cov_diag = cov_diag * mask_values + options_.epsilon();
  if (rank > 0) {
    cov_factor_maps = cov_factor_maps * mask_values;
  }

  if (LayerTrace* trace = LayerTrace::active()) {
    trace->record(*mean_l_.ptr(), mean_logits);
    trace->record(*log_cov_diag_l_.ptr(), cov_diag);
    if (rank > 0) trace->record(*cov_factor_l_.ptr(), cov_factor_maps);
  }
  HeadOutput output{distribution_from_maps(mean_logits, cov_diag, cov_factor_maps), mean_logits,
                    cov_diag, cov_factor_maps};
  return output;
}

}  // namespace ssn::nn
