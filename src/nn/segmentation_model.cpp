#include "ssn/nn/segmentation_model.h"

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

SegmentationModelImpl::SegmentationModelImpl(std::shared_ptr<BackboneImpl> backbone, ModelKind kind,
                                             int64_t num_classes, int64_t rank, double epsilon)
    : backbone_(std::move(backbone)), kind_(kind), num_classes_(num_classes) {
  TORCH_CHECK(backbone_ != nullptr, "SegmentationModel: a backbone is required");
  TORCH_CHECK(num_classes >= 2, "SegmentationModel: num_classes must be >= 2, got ", num_classes);
  TORCH_CHECK(kind != ModelKind::kLowRank || rank >= 1,
              "SegmentationModel: a low-rank model needs rank >= 1, got ", rank);
  register_module("backbone", backbone_);
  const int64_t features = backbone_->out_channels();
  const int64_t dims = backbone_->dimension();
  if (kind == ModelKind::kDeterministic) {
    if (dims == 2) {
      logits_l_ = register_module(
          "logits_l", torch::nn::Conv2d(torch::nn::Conv2dOptions(features, num_classes, 1)).ptr());
    } else {
      logits_l_ = register_module(
          "logits_l", torch::nn::Conv3d(torch::nn::Conv3dOptions(features, num_classes, 1)).ptr());
    }
  } else {
    head_ = register_module(
        "head", StochasticSegmentationHead(
                    StochasticSegmentationHeadOptions(features, num_classes,
                                                      kind == ModelKind::kDiagonal ? 0 : rank)
                        .epsilon(epsilon)
                        .dimension(dims)));
  }
}

ModelOutput SegmentationModelImpl::forward(const torch::Tensor& image, const torch::Tensor& mask) {
  const torch::Tensor features = backbone_->forward(image);
  ModelOutput output;
  if (kind_ == ModelKind::kDeterministic) {
    // relu first, as the SSN head does, so the three kinds see the same features.
    const torch::Tensor activated = torch::relu(features);
    output.mean_logits =
        backbone_->dimension() == 2
            ? std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(logits_l_)->forward(activated)
            : std::dynamic_pointer_cast<torch::nn::Conv3dImpl>(logits_l_)->forward(activated);
    return output;
  }
  HeadOutput head = head_->forward(features, mask);
  output.mean_logits = head.mean_logits;
  output.stochastic = std::move(head);
  return output;
}

}  // namespace ssn::nn
