#include "ssn/train/model_factory.h"

#include <torch/cuda.h>
#include <torch/optim.h>

#include "ssn/nn/deepmedic.h"
#include "ssn/nn/unet.h"

namespace ssn::train {

nn::SegmentationModel build_model(const config::ModelConfig& c) {
  std::shared_ptr<nn::BackboneImpl> backbone;
  if (c.backbone == config::Backbone::kDeepMedic) {
    const auto options = nn::DeepMedicOptions(c.input_channels)
                             .feature_maps(c.feature_maps)
                             .fully_connected(c.fully_connected)
                             .scale_factors(c.scale_factors)
                             .dropout(c.dropout);
    if (c.dimensions == 2) {
      backbone = std::make_shared<nn::DeepMedic2dImpl>(options);
    } else {
      backbone = std::make_shared<nn::DeepMedic3dImpl>(options);
    }
  } else {
    const auto options = nn::UNetOptions(c.input_channels, c.filters)
                             .convs_per_level(c.convs_per_level)
                             .normalisation(c.normalisation);
    if (c.dimensions == 2) {
      backbone = std::make_shared<nn::UNet2dImpl>(options);
    } else {
      backbone = std::make_shared<nn::UNet3dImpl>(options);
    }
  }
  nn::SegmentationModel model(
      backbone,
      nn::SegmentationModelOptions(c.kind, c.num_classes).rank(c.rank).epsilon(c.epsilon));
  torch::NoGradGuard no_grad;
  if (nn::StochasticSegmentationHeadImpl* head = model->head()) {
    if (c.log_diag_bias != 0.0) head->log_cov_diag_bias().fill_(c.log_diag_bias);
    if (at::Tensor factor = head->cov_factor_weight(); factor.defined()) {
      factor.mul_(c.factor_init_scale);
    }
  }
  return model;
}

std::unique_ptr<torch::optim::Optimizer> build_optimizer(
    const config::OptimizerConfig& c, const std::vector<torch::Tensor>& parameters) {
  switch (c.kind) {
    case config::Optimizer::kAdam:
      return std::make_unique<torch::optim::Adam>(
          parameters, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
    case config::Optimizer::kRMSprop:
      return std::make_unique<torch::optim::RMSprop>(parameters, torch::optim::RMSpropOptions(c.lr)
                                                                     .weight_decay(c.weight_decay)
                                                                     .momentum(c.momentum)
                                                                     .alpha(c.alpha));
    case config::Optimizer::kSGD:
      break;
  }
  return std::make_unique<torch::optim::SGD>(
      parameters, torch::optim::SGDOptions(c.lr).weight_decay(c.weight_decay).momentum(c.momentum));
}

double learning_rate(const config::OptimizerConfig& optimizer,
                     const config::SchedulerConfig& scheduler, int64_t epoch) {
  double lr = optimizer.lr;
  for (int64_t milestone : scheduler.milestones) {
    if (epoch >= milestone) lr *= scheduler.gamma;
  }
  return lr;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

loss::SegmentationLoss build_loss(const config::LossConfig& config) {
  return loss::SegmentationLoss({config.kind, config.num_mc_samples});
}

data::LidcOptions lidc_options(const config::DataConfig& config) {
  data::LidcOptions options;
  options.crop = config.crop;
  options.size = config.size;
  options.annotators = config.annotators;
  return options;
}

data::CsvColumns csv_columns(const config::DataConfig& config) {
  return {config.channels, config.target, config.sampling_mask};
}

torch::Device checked_device(const std::string& name) {
  const torch::Device device(name);
  TORCH_CHECK(!device.is_cuda() || torch::cuda::is_available(), "device ", name,
              ": this LibTorch build has no usable CUDA device (use the CPU)");
  return device;
}

}  // namespace ssn::train
