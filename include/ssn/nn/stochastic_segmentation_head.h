#pragma once

// The SSN head (Monteiro et al., 2020): turns backbone features into a low-rank Gaussian over the
// logit map. Shapes: B batch, F feature channels, C classes, R rank, S pixels/voxels, N = C*S.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "ssn/distributions/low_rank_normal.h"

namespace ssn::nn {

struct StochasticSegmentationHeadOptions {
  StochasticSegmentationHeadOptions(int64_t in_channels, int64_t num_classes, int64_t rank)
      : in_channels_(in_channels), num_classes_(num_classes), rank_(rank) {}

  /// F: channels of the backbone features.
  TORCH_ARG(int64_t, in_channels);
  /// C: segmentation classes, background included.
  TORCH_ARG(int64_t, num_classes);
  /// R: rank of the covariance factor; 0 gives independent normals (the "diagonal" SSN).
  TORCH_ARG(int64_t, rank);
  /// Added to the diagonal for numerical stability, as the reference (1e-5).
  TORCH_ARG(double, epsilon) = 1e-5;
  /// 2 for images, 3 for volumes.
  TORCH_ARG(int64_t, dimension) = 2;
  /// Whether the factor's 1x1 convolution has a bias (the reference's has). Without it the factor
  /// is a function of the features alone: no direction of the covariance is spatially constant
  /// by construction.
  TORCH_ARG(bool, factor_bias) = true;
};

/// What the head produces for one batch.
struct HeadOutput {
  /// Over the flattened logits, event shape (C, *spatial).
  LowRankNormal distribution;
  /// [B, C, *spatial]: the mean logits (argmax = most likely segmentation).
  torch::Tensor mean_logits;
  /// [B, C, *spatial]: D, mask applied.
  torch::Tensor cov_diag;
  /// [B, C*R, *spatial]: P as maps, channel k = rank k / C, class k % C (rank-major), mask
  /// applied. Empty channel dimension for R = 0.
  torch::Tensor cov_factor;
};

class StochasticSegmentationHeadImpl : public torch::nn::Module {
 public:
  explicit StochasticSegmentationHeadImpl(const StochasticSegmentationHeadOptions& options);

  /// features [B, F, *spatial] (before activation: the head applies relu as the reference);
  /// mask [B, *spatial] (the region of interest, bool or 0/1) or undefined for all ones.
  /// Inside the mask D = exp(log D) + 2 eps and outside it D = eps, P = 0, exactly as the reference
  /// (which adds eps once before and once after masking); an undefined mask counts as all ones.
  HeadOutput forward(const torch::Tensor& features, const torch::Tensor& mask = {});

  const StochasticSegmentationHeadOptions& options() const { return options_; }

  /// The parameters of the covariance (log D and P convolutions, weights and biases): what a
  /// mean-only warm-up freezes.
  std::vector<torch::Tensor> covariance_parameters() const;
  /// The bias [C] of the mean's convolution (initialisation recipes set it).
  torch::Tensor mean_bias() const;
  /// The bias [C] of the log-diagonal convolution (initialisation recipes set it).
  torch::Tensor log_cov_diag_bias() const;
  /// The weight [C*R, F, 1, ...] of the factor convolution; undefined for R = 0.
  torch::Tensor cov_factor_weight() const;

 private:
  StochasticSegmentationHeadOptions options_;
  // 1x1 convolutions registered under the reference's state_dict names (mean_l, log_cov_diag_l,
  // cov_factor_l); cov_factor_l_ is empty for R = 0.
  torch::nn::AnyModule mean_l_;
  torch::nn::AnyModule log_cov_diag_l_;
  torch::nn::AnyModule cov_factor_l_;
};

TORCH_MODULE(StochasticSegmentationHead);

}  // namespace ssn::nn
