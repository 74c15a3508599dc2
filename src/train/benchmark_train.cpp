#include "ssn/train/benchmark_train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim.h>

#include <algorithm>
#include <chrono>

#include "ssn/runtime/memory_tracker.h"
#include "ssn/train/grad_scaler.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {

nlohmann::json benchmark_train(const config::Config& config, const std::string& device_name,
                               int64_t steps, int64_t warmup, uint64_t seed) {
  TORCH_CHECK(steps >= 1 && warmup >= 0, "benchmark train: needs steps >= 1 and warmup >= 0");
  const torch::Device device = checked_device(device_name);
  torch::manual_seed(seed);
  nn::SegmentationModel model = build_model(config.model);
  model->to(device);
  apply_precision(*model, config, device);
  model->train();
  const auto optimizer = build_optimizer(config.optimizer, model->parameters());
  const loss::SegmentationLoss loss_fn = build_loss(config.loss);
  at::Generator generator = at::detail::createCPUGenerator(seed);

  const int64_t batch = config.training.batch_size;
  const auto dims = static_cast<size_t>(config.model.dimensions);
  std::vector<int64_t> input, output;
  if (config.data.dataset == config::Dataset::kLidc) {
    input.assign(dims, config.data.size);
  } else if (!config.training.input_patch_size.empty()) {
    input = config.training.input_patch_size;
  } else {
    input.assign(dims, model->backbone().input_size_for(1));
  }
  TORCH_CHECK(input.size() == dims, "benchmark train: the input size has ", input.size(),
              " axes, the model ", dims);
  for (int64_t size : input) output.push_back(model->backbone().output_size(size));
  std::vector<int64_t> image_shape = {batch, config.model.input_channels};
  image_shape.insert(image_shape.end(), input.begin(), input.end());
  std::vector<int64_t> target_shape = {batch};
  target_shape.insert(target_shape.end(), output.begin(), output.end());
  const at::Tensor images = at::randn(image_shape, generator).to(device);
  const at::Tensor targets =
      at::randint(config.model.num_classes, target_shape, generator, at::kLong).to(device);
  const at::Tensor masks = config.data.dataset == config::Dataset::kLidc
                               ? at::Tensor()
                               : at::ones(target_shape, at::kBool).to(device);
  at::Generator noise = at::detail::createCPUGenerator(seed + 1);
  GradScaler scaler(config.training.precision == runtime::Precision::kFp16);
  const bool cuda = device.is_cuda();
  const auto synchronise = [&] {
    if (cuda) torch::cuda::synchronize();
  };

  runtime::CpuMemoryTracker tracker;
  std::vector<double> seconds;
  double last_loss = 0.0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    if (step == warmup) tracker.reset_peak();
    synchronise();
    const auto start = std::chrono::steady_clock::now();
    optimizer->zero_grad();
    const nn::ModelOutput out = model->forward(images, masks);
    const at::Tensor loss =
        loss_fn(out.mean_logits, out.stochastic ? &out.stochastic->distribution : nullptr, targets,
                cuda ? c10::optional<at::Generator>() : noise);
    scaler.scale(loss).backward();
    scaler.step(*optimizer);
    last_loss = loss.item<double>();  // synchronises the device too
    synchronise();
    if (step >= warmup) {
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  return {
      {"model", config.model.name},
      {"device", device.str()},
      {"precision", runtime::to_string(config.training.precision)},
      {"batch_size", batch},
      {"input_shape", image_shape},
      {"threads", at::get_num_threads()},
      {"steps", steps},
      {"seconds_per_step", median},
      {"seconds", seconds},
      {"examples_per_second", static_cast<double>(batch) / median},
      {"peak_tensor_bytes", cuda ? nlohmann::json(nullptr) : nlohmann::json(tracker.peak_bytes())},
      {"loss", last_loss}};
}

}  // namespace ssn::train
