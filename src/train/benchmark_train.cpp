#include "ssn/train/benchmark_train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/optim.h>

#include <algorithm>
#include <array>
#include <chrono>

#include "ssn/runtime/cuda_memory.h"
#include "ssn/runtime/memory_tracker.h"
#include "ssn/train/grad_scaler.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {

nlohmann::json benchmark_train(const config::Config& config, const std::string& device_name,
                               int64_t steps, int64_t warmup, uint64_t seed, bool phases) {
  TORCH_CHECK(steps >= 1 && warmup >= 0, "benchmark train: needs steps >= 1 and warmup >= 0");
  const torch::Device device = checked_device(device_name);
  torch::manual_seed(seed);
  nn::SegmentationModel model = build_model(config.model);
  model->to(device);
  apply_precision(*model, config, device);
  model->train();
  const auto optimizer = build_optimizer(config.optimizer, *model);
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
  // Every annotator's mask per example where the config trains on them all.
  std::vector<int64_t> label_shape = target_shape;
  if (config.data.dataset == config::Dataset::kLidc &&
      config.data.train_targets == "all_annotators") {
    label_shape.insert(label_shape.begin() + 1, config.data.annotators);
  }
  const at::Tensor targets =
      at::randint(config.model.num_classes, label_shape, generator, at::kLong).to(device);
  const at::Tensor masks = config.data.dataset == config::Dataset::kLidc
                               ? at::Tensor()
                               : at::ones(target_shape, at::kBool).to(device);
  at::Generator noise = at::detail::createCPUGenerator(seed + 1);
  GradScaler scaler(config.training.precision == runtime::Precision::kFp16);
  const bool cuda = device.is_cuda();
  const auto synchronise = [&] {
    if (cuda) torch::cuda::synchronize();
  };

  // Peak tensor memory over the timed steps. CPU: tensors allocated after the model and the batch
  // (gradients and the optimiser's state included). CUDA: the caching allocator's peak less the
  // bytes allocated when the timed steps begin, as bench/pytorch_train.py measures it there.
  runtime::CpuMemoryTracker tracker;
  int64_t cuda_before = 0;
  std::vector<double> seconds;
  // --phases: the device synchronised after each phase, and each phase's seconds kept.
  static constexpr std::array<const char*, 4> kPhases = {"forward", "loss", "backward",
                                                         "optimizer"};
  std::array<std::vector<double>, kPhases.size()> phase_seconds;
  double last_loss = 0.0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    synchronise();
    if (step == warmup) {
      tracker.reset_peak();
      if (cuda) {
        runtime::reset_cuda_peak(device);
        cuda_before = runtime::cuda_allocated_bytes(device).value_or(0);
      }
    }
    const auto start = std::chrono::steady_clock::now();
    auto phase_start = start;
    const auto end_phase = [&](size_t phase) {
      if (!phases) return;
      synchronise();
      const auto now = std::chrono::steady_clock::now();
      if (step >= warmup) {
        phase_seconds[phase].push_back(std::chrono::duration<double>(now - phase_start).count());
      }
      phase_start = now;
    };
    optimizer->zero_grad();
    const nn::ModelOutput out = model->forward(images, masks);
    end_phase(0);
    const at::Tensor loss =
        loss_fn(out.mean_logits, out.stochastic ? &out.stochastic->distribution : nullptr, targets,
                cuda ? c10::optional<at::Generator>() : noise);
    end_phase(1);
    scaler.scale(loss).backward();
    end_phase(2);
    scaler.step(*optimizer);
    last_loss = loss.item<double>();  // synchronises the device too
    end_phase(3);
    synchronise();
    if (step >= warmup) {
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  const auto median_of = [](std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  const double median = median_of(seconds);
  nlohmann::json peak = tracker.peak_bytes();
  if (cuda) {
    const std::optional<int64_t> cuda_peak = runtime::cuda_peak_allocated_bytes(device);
    peak = cuda_peak ? nlohmann::json(*cuda_peak - cuda_before) : nlohmann::json(nullptr);
  }
  nlohmann::json report = {{"model", config.model.name},
                           {"device", device.str()},
                           {"precision", runtime::to_string(config.training.precision)},
                           {"batch_size", batch},
                           {"input_shape", image_shape},
                           {"threads", at::get_num_threads()},
                           {"steps", steps},
                           {"seconds_per_step", median},
                           {"seconds", seconds},
                           {"examples_per_second", static_cast<double>(batch) / median},
                           {"peak_tensor_bytes", peak},
                           {"loss", last_loss}};
  if (phases) {
    for (size_t i = 0; i < kPhases.size(); ++i) {
      report["phase_seconds"][kPhases[i]] = median_of(phase_seconds[i]);
    }
  }
  return report;
}

}  // namespace ssn::train
