#pragma once

// SegmentationModel = backbone + head, of the three kinds the paper compares: a deterministic
// network (softmax cross-entropy), a diagonal SSN (rank 0) and a low-rank SSN.
// Shapes: B batch, I input channels, C classes, R rank, *spatial = H, W or D, H, W.

#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>

#include "ssn/nn/backbone.h"
#include "ssn/nn/stochastic_segmentation_head.h"
#include "ssn/runtime/precision.h"

namespace ssn::nn {

enum class ModelKind { kDeterministic, kDiagonal, kLowRank };

/// "deterministic" | "diagonal" | "low_rank".
std::string to_string(ModelKind kind);

struct ModelOutput {
  /// [B, C, *spatial]: the logits (deterministic) or the mean logits (SSN).
  torch::Tensor mean_logits;
  /// The SSN head's output; empty for a deterministic model.
  std::optional<HeadOutput> stochastic;
};

struct SegmentationModelOptions {
  SegmentationModelOptions(ModelKind kind, int64_t num_classes)
      : kind_(kind), num_classes_(num_classes) {}

  /// Deterministic, diagonal (rank 0) or low-rank SSN.
  TORCH_ARG(ModelKind, kind);
  /// C: segmentation classes, background included.
  TORCH_ARG(int64_t, num_classes);
  /// R: used by kLowRank only (>= 1); kDiagonal has rank 0.
  TORCH_ARG(int64_t, rank) = 10;
  /// Added to the diagonal of the SSN head's covariance (see StochasticSegmentationHeadOptions).
  TORCH_ARG(double, epsilon) = 1e-5;
  /// The factor convolution's bias (StochasticSegmentationHeadOptions::factor_bias).
  TORCH_ARG(bool, factor_bias) = true;
};

class SegmentationModelImpl : public torch::nn::Module {
 public:
  SegmentationModelImpl(std::shared_ptr<BackboneImpl> backbone,
                        const SegmentationModelOptions& options);

  /// image [B, I, *spatial]; mask [B, *spatial] or undefined (the SSN head's region of interest).
  /// The backbone runs under autocast in precision(); the head and every output are float32.
  ModelOutput forward(const torch::Tensor& image, const torch::Tensor& mask = {});

  const SegmentationModelOptions& options() const { return options_; }
  ModelKind kind() const { return options_.kind(); }
  /// The backbone's precision (training.precision); fp32 unless set. Not saved in checkpoints:
  /// the weights are float32 whatever it is.
  runtime::Precision precision() const { return precision_; }
  void set_precision(runtime::Precision precision) { precision_ = precision; }
  int64_t num_classes() const { return options_.num_classes(); }
  BackboneImpl& backbone() { return *backbone_; }
  /// The bias [C] of the 1x1 convolution that gives the (mean) logits: the SSN head's mean_l or
  /// the deterministic model's logits_l (initialisation recipes set it).
  torch::Tensor mean_bias();
  /// The SSN head; null for a deterministic model.
  StochasticSegmentationHeadImpl* head() { return head_.is_empty() ? nullptr : head_.get(); }

 private:
  std::shared_ptr<BackboneImpl> backbone_;
  SegmentationModelOptions options_;
  StochasticSegmentationHead head_{nullptr};
  torch::nn::AnyModule logits_l_;  // the deterministic 1x1 convolution
  runtime::Precision precision_ = runtime::Precision::kFp32;
};

TORCH_MODULE(SegmentationModel);

}  // namespace ssn::nn
