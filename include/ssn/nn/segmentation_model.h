#pragma once

// SegmentationModel = backbone + head, of the three kinds the paper compares: a deterministic
// network (softmax cross-entropy), a diagonal SSN (rank 0) and a low-rank SSN.
// Shapes: B batch, I input channels, C classes, R rank, *spatial = H, W or D, H, W.

#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <optional>
#include <string>

#include "ssn/nn/backbone.h"
#include "ssn/nn/stochastic_segmentation_head.h"

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

class SegmentationModelImpl : public torch::nn::Module {
 public:
  /// rank is used by kLowRank only (>= 1); kDiagonal has rank 0.
  SegmentationModelImpl(std::shared_ptr<BackboneImpl> backbone, ModelKind kind, int64_t num_classes,
                        int64_t rank, double epsilon = 1e-5);

  /// image [B, I, *spatial]; mask [B, *spatial] or undefined (the SSN head's region of interest).
  ModelOutput forward(const torch::Tensor& image, const torch::Tensor& mask = {});

  ModelKind kind() const { return kind_; }
  int64_t num_classes() const { return num_classes_; }
  BackboneImpl& backbone() { return *backbone_; }

 private:
  std::shared_ptr<BackboneImpl> backbone_;
  ModelKind kind_;
  int64_t num_classes_;
  StochasticSegmentationHead head_{nullptr};
  std::shared_ptr<torch::nn::Module> logits_l_;  // the deterministic 1x1 convolution
};

TORCH_MODULE(SegmentationModel);

}  // namespace ssn::nn
