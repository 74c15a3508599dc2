#include "ssn/train/model_factory.h"

#include <torch/cuda.h>
#include <torch/optim.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>

#include "ssn/nn/deepmedic.h"
#include "ssn/nn/unet.h"

namespace ssn::train {

void he_normal_init(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_parameters();
  for (const auto& item : parameters) {
    const std::string& name = item.key();
    at::Tensor weight = item.value();
    const std::string suffix = ".weight";
    if (weight.dim() < 3 || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;  // not a convolution's weight
    }
    const double fan_in = static_cast<double>(weight[0].numel());
    const double stddev = std::sqrt(1.3 * 2.0 / fan_in);
    at::Tensor values = at::randn_like(weight) * stddev;
    for (int tries = 0; tries < 100; ++tries) {  // redraw beyond 2 standard deviations
      const at::Tensor outside = values.abs() > 2 * stddev;
      if (!outside.any().item<bool>()) break;
      values = at::where(outside, at::randn_like(values) * stddev, values);
    }
    weight.copy_(values);
    const std::string bias = name.substr(0, name.size() - suffix.size()) + ".bias";
    if (const at::Tensor* b = parameters.find(bias)) b->zero_();
  }
}

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
                             .normalisation(c.normalisation)
                             .pooling(c.pooling)
                             .upsampling(c.upsampling)
                             .decoder_widths(c.decoder_widths)
                             .recombination(c.recombination)
                             .batch_norm_epsilon(c.batch_norm_epsilon)
                             .batch_norm_momentum(c.batch_norm_momentum);
    if (c.dimensions == 2) {
      backbone = std::make_shared<nn::UNet2dImpl>(options);
    } else {
      backbone = std::make_shared<nn::UNet3dImpl>(options);
    }
  }
  nn::SegmentationModel model(backbone, nn::SegmentationModelOptions(c.kind, c.num_classes)
                                            .rank(c.rank)
                                            .epsilon(c.epsilon)
                                            .factor_bias(c.factor_bias));
  torch::NoGradGuard no_grad;
  if (c.he_normal_init) he_normal_init(*model);
  if (nn::StochasticSegmentationHeadImpl* head = model->head()) {
    if (c.log_diag_bias != 0.0) head->log_cov_diag_bias().fill_(c.log_diag_bias);
    if (at::Tensor factor = head->cov_factor_weight(); factor.defined()) {
      factor.mul_(c.factor_init_scale);
    }
  }
  return model;
}

std::vector<double> init_mean_bias(nn::SegmentationModelImpl& model,
                                   const std::vector<double>& frequencies) {
  TORCH_CHECK(static_cast<int64_t>(frequencies.size()) == model.num_classes(),
              "init_mean_bias: ", frequencies.size(), " class frequencies for a model of ",
              model.num_classes(), " classes");
  std::vector<double> bias;
  for (double f : frequencies) {
    TORCH_CHECK(std::isfinite(f) && f >= 0 && f <= 1,
                "init_mean_bias: a class frequency must be "
                "in [0, 1], got ",
                f);
    bias.push_back(std::log(std::max(f, 1e-6)));
  }
  torch::NoGradGuard no_grad;
  model.mean_bias().copy_(at::tensor(bias, at::kDouble).to(model.mean_bias().options()));
  return bias;
}

namespace {

// The config's optimiser over `groups` (every group with the config's options: a group without
// options of its own takes the optimiser's defaults).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const config::OptimizerConfig& c, const std::vector<std::vector<torch::Tensor>>& groups) {
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  for (const auto& group : groups) param_groups.emplace_back(group);
  switch (c.kind) {
    case config::Optimizer::kAdam:
      return std::make_unique<torch::optim::Adam>(
          param_groups, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
    case config::Optimizer::kRMSprop:
      return std::make_unique<torch::optim::RMSprop>(param_groups,
                                                     torch::optim::RMSpropOptions(c.lr)
                                                         .weight_decay(c.weight_decay)
                                                         .momentum(c.momentum)
                                                         .alpha(c.alpha));
    case config::Optimizer::kSGD:
      break;
  }
  return std::make_unique<torch::optim::SGD>(
      param_groups,
      torch::optim::SGDOptions(c.lr).weight_decay(c.weight_decay).momentum(c.momentum));
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> build_optimizer(const config::OptimizerConfig& c,
                                                         nn::SegmentationModelImpl& model) {
  nn::StochasticSegmentationHeadImpl* head = model.head();
  if (c.covariance_lr_factor == 1.0 || head == nullptr) {
    return make_optimizer(c, {model.parameters()});
  }
  const std::vector<torch::Tensor> covariance = head->covariance_parameters();
  std::vector<torch::Tensor> rest;
  for (const auto& parameter : model.parameters()) {
    const bool in_covariance =
        std::any_of(covariance.begin(), covariance.end(),
                    [&](const torch::Tensor& p) { return p.is_same(parameter); });
    if (!in_covariance) rest.push_back(parameter);
  }
  auto optimizer = make_optimizer(c, {rest, covariance});
  set_learning_rate(*optimizer, c.lr, c);  // the covariance group from the start
  return optimizer;
}

double learning_rate(const config::OptimizerConfig& optimizer,
                     const config::SchedulerConfig& scheduler, int64_t epoch) {
  if (scheduler.kind == config::Scheduler::kCosineAnnealingLR) {
    const double phase =
        std::acos(-1.0) * static_cast<double>(epoch) / static_cast<double>(scheduler.t_max);
    return scheduler.eta_min + (optimizer.lr - scheduler.eta_min) * (1.0 + std::cos(phase)) / 2.0;
  }
  double lr = optimizer.lr;
  for (int64_t milestone : scheduler.milestones) {
    if (epoch >= milestone) lr *= scheduler.gamma;
  }
  return lr;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr,
                       const config::OptimizerConfig& config) {
  auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].options().set_lr(g == 1 ? lr * config.covariance_lr_factor : lr);
  }
}

loss::SegmentationLoss build_loss(const config::LossConfig& config) {
  return loss::SegmentationLoss({config.kind, config.num_mc_samples, config.all_samples_weight});
}

data::LidcOptions lidc_options(const config::DataConfig& config) {
  data::LidcOptions options;
  options.crop = config.crop;
  options.size = config.size;
  options.annotators = config.annotators;
  options.intensity = config.intensity == "minus_half" ? data::LidcOptions::Intensity::kMinusHalf
                                                       : data::LidcOptions::Intensity::kStandardise;
  return options;
}

data::CsvColumns csv_columns(const config::DataConfig& config) {
  return {config.channels, config.target, config.sampling_mask};
}

void apply_precision(nn::SegmentationModelImpl& model, const config::Config& config,
                     const torch::Device& device) {
  try {
    runtime::check_precision_supported(config.training.precision, device);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "training.precision: ", error.what_without_backtrace());
  }
  model.set_precision(config.training.precision);
}

torch::Device checked_device(const std::string& name) {
  const torch::Device device(name);
  TORCH_CHECK(!device.is_cuda() || torch::cuda::is_available(), "device ", name,
              ": this LibTorch build has no usable CUDA device (use the CPU)");
  return device;
}

int64_t estimate_step_bytes(const config::Config& config, const nn::BackboneImpl& backbone,
                            int64_t input_voxels, int64_t output_voxels) {
  const double batch = static_cast<double>(config.training.batch_size);
  const double levels = config.model.backbone == config::Backbone::kUNet
                            ? static_cast<double>(config.model.filters.size())
                            : 1.0;
  const double activations = batch * static_cast<double>(input_voxels) * 2.0 *
                             static_cast<double>(backbone.widest_layer()) * 4.0 * levels;
  const double classes = static_cast<double>(config.model.num_classes);
  const double logits = batch * classes * static_cast<double>(output_voxels);
  const double head = logits * (static_cast<double>(config.model.rank) + 2.0) * 4.0 * 2.0;
  const double loss =
      config.loss.kind == loss::LossKind::kStochasticMcIntegral
          ? logits * static_cast<double>(config.loss.num_mc_samples) / 4.0 * 4.0 * 3.0
          : logits * 4.0 * 3.0;
  const double total = activations + head + loss;
  return total > 9.0e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(total);
}

namespace {

// MemAvailable of /proc/meminfo, in bytes; 0 where unknown.
int64_t available_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t value = 0;
  while (meminfo >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

double gib(double bytes) { return bytes / (1 << 30); }

}  // namespace

void check_model_fits_in_memory(const config::ModelConfig& model) {
  const int64_t available = available_memory();
  if (available <= 0) return;
  // The head's factor convolution dominates at large ranks: C x R x F weights, with their
  // gradient and two optimiser moments.
  const int64_t features = model.backbone == config::Backbone::kUNet
                               ? model.filters.front()
                               : (model.fully_connected.empty() ? model.feature_maps.back()
                                                                : model.fully_connected.back());
  const double bytes = static_cast<double>(model.num_classes) * static_cast<double>(model.rank) *
                       static_cast<double>(features) * 4.0 * 4.0;
  TORCH_CHECK(bytes <= static_cast<double>(available),
              "the model's covariance head alone needs about ", gib(bytes), " GiB (",
              model.num_classes, " classes x rank ", model.rank, " x ", features,
              " features, with gradients and optimiser state), but ",
              gib(static_cast<double>(available)), " GiB are available: lower model.rank");
}

void check_step_fits_in_memory(const config::Config& config, const nn::BackboneImpl& backbone,
                               int64_t input_voxels, int64_t output_voxels) {
  const int64_t available = available_memory();
  if (available <= 0) return;  // unknown here: LibTorch's allocator will say so
  const int64_t estimate = estimate_step_bytes(config, backbone, input_voxels, output_voxels);
  TORCH_CHECK(estimate <= available, "one training step would need about ",
              gib(static_cast<double>(estimate)), " GiB (batch_size ", config.training.batch_size,
              ", ", input_voxels, " input voxels per example, rank ", config.model.rank, ", ",
              config.loss.num_mc_samples, " Monte-Carlo samples), but ",
              gib(static_cast<double>(available)),
              " GiB are available: lower training.batch_size, the input or patch size, the rank "
              "or loss num_mc_samples");
}

}  // namespace ssn::train
