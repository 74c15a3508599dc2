#include "ssn/nn/segmentation_model.h"

#include "ssn/nn/layer_trace.h"
#include "ssn/nn/nd_layers.h"

namespace ssn::nn {

std::string to_string(ModelKind kind) {
  switch (kind) {
    case ModelKind::kDeterministic:
      return "deterministic";
    case ModelKind::kDiagonal:
      return "diagonal";
    case ModelKind::kLowRank:
      return "low_rank";
  }
  return "unknown";
}

SegmentationModelImpl::SegmentationModelImpl(std::shared_ptr<BackboneImpl> backbone,
                                             const SegmentationModelOptions& options)
    : backbone_(std::move(backbone)), options_(options) {
  TORCH_CHECK(backbone_ != nullptr, "SegmentationModel: a backbone is required");
  const int64_t num_classes = options_.num_classes();
  TORCH_CHECK(num_classes >= 2, "SegmentationModel: num_classes must be >= 2, got ", num_classes);
  TORCH_CHECK(options_.kind() != ModelKind::kLowRank || options_.rank() >= 1,
              "SegmentationModel: a low-rank model needs rank >= 1, got ", options_.rank());
  register_module("backbone", backbone_);
  const int64_t features = backbone_->out_channels();
  const int64_t dims = backbone_->dimension();
  if (options_.kind() == ModelKind::kDeterministic) {
    logits_l_ = pointwise_conv(dims, features, num_classes);
    register_module("logits_l", logits_l_.ptr());
  } else {
    const int64_t rank = options_.kind() == ModelKind::kDiagonal ? 0 : options_.rank();
    head_ = register_module(
        "head",
        StochasticSegmentationHead(StochasticSegmentationHeadOptions(features, num_classes, rank)
                                       .epsilon(options_.epsilon())
                                       .factor_bias(options_.factor_bias())
                                       .dimension(dims)));
  }
}

torch::Tensor SegmentationModelImpl::mean_bias() {
  if (!head_.is_empty()) return head_->mean_bias();
  return logits_l_.ptr()->named_parameters(/*recurse=*/false)["bias"];
}

ModelOutput SegmentationModelImpl::forward(const torch::Tensor& image, const torch::Tensor& mask) {
  torch::Tensor features;
  {
    const runtime::AutocastGuard autocast(precision_, image.device().type());
    features = backbone_->forward(image);
  }
  // The head, the covariance and (in the caller) the loss in float32, even where the caller runs
  // the whole forward under autocast.
  const runtime::AutocastOff float32;
  if (features.scalar_type() == torch::kBFloat16 || features.scalar_type() == torch::kHalf) {
    features = features.to(torch::kFloat);
  }
  ModelOutput output;
  if (options_.kind() == ModelKind::kDeterministic) {
    // relu first, as the SSN head does, so the three kinds see the same features.
    output.mean_logits = logits_l_.forward(torch::relu(features));
    if (LayerTrace* trace = LayerTrace::active())
      trace->record(*logits_l_.ptr(), output.mean_logits);
    return output;
  }
  HeadOutput head = head_->forward(features, mask);
  output.mean_logits = head.mean_logits;
  output.stochastic = std::move(head);
  return output;
}

}  // namespace ssn::nn
