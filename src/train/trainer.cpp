#include "ssn/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>

#include "ssn/io/atomic_file.h"
#include "ssn/train/calibrate.h"
#include "ssn/train/checkpoint.h"
#include "ssn/train/model_factory.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The generator of the loss's Monte-Carlo noise: a CPU generator, or on a GPU the device's default
// generator, seeded alike. Drawn on the CPU and copied, the noise of the paper's LIDC config (4 M
// normals a step, 19 ms on one core) would add half again to the GPU's step (docs/performance.md).
// The device's default generator is also the one dropout draws from there, so its state in the
// checkpoint makes --resume exact on the GPU too.
at::Generator noise_generator(torch::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(seed);
  return generator;
}

// Everything one run holds between epochs.
struct Run {
  Run(const config::Config& config_, const TrainOptions& options_, torch::Device device_,
      nn::SegmentationModel model_, std::unique_ptr<TrainingData> data_)
      : config(config_),
        options(options_),
        device(device_),
        model(std::move(model_)),
        data(std::move(data_)),
        optimizer(build_optimizer(config_.optimizer, *model)),
        loss_fn(build_loss(config_.loss)),
        generator(at::detail::createCPUGenerator(options_.seed)),
        noise(noise_generator(device_, options_.seed + 1)),
        scaler(config_.training.precision == runtime::Precision::kFp16) {}

  const config::Config& config;
  const TrainOptions& options;
  // Data parallelism: this rank's rows of every global batch (all of it in one process).
  Communicator* communicator = nullptr;
  int64_t rank = 0, world = 1;
  torch::Device device;
  nn::SegmentationModel model;
  std::unique_ptr<TrainingData> data;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  loss::SegmentationLoss loss_fn;
  // Two streams: `generator` for the data (batch order, annotator, augmentation), used by the
  // prefetching thread during an epoch; `noise` for the Monte-Carlo samples of the loss (on the
  // training device: noise_generator).
  at::Generator generator;
  at::Generator noise;
  GradScaler scaler;  // fp16 only
  // The average of the weights (training.ema_decay; empty without it) and its updates so far.
  nn::SegmentationModel average{nullptr};
  int64_t ema_updates = 0;
  int64_t start_epoch = 0;
  // checkpoint_best.pt's value of valid.best_criterion, and its validation GED (the checkpoint's
  // best_ged); infinite while no epoch after the warm-up has been validated.
  double best_value = std::numeric_limits<double>::infinity();
  double best_ged = std::numeric_limits<double>::infinity();
  std::vector<EpochRecord> records;
  int64_t bad_total = 0;

  fs::path last() const { return options.job_dir / "checkpoint_last.pt"; }
  bool writes() const { return rank == 0; }
  // The weights that are validated, chosen and predicted with: the average where there is one.
  nn::SegmentationModel& scored() { return average ? average : model; }
};

// target = decay * target + (1 - decay) * source, tensor by tensor over the parameters and the
// floating-point buffers (batch norm's statistics); the other buffers (its step count), and every
// tensor at decay 0, are copied.
void blend(nn::SegmentationModelImpl& target, nn::SegmentationModelImpl& source, double decay) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> to = target.parameters(), from = source.parameters();
  for (const auto& b : target.buffers()) to.push_back(b);
  for (const auto& b : source.buffers()) from.push_back(b);
  TORCH_CHECK(to.size() == from.size(),
              "training.ema_decay: the averaged model does not match the trained one");
  for (size_t i = 0; i < to.size(); ++i) {
    if (decay == 0.0 || !to[i].is_floating_point()) {
      to[i].copy_(from[i]);
    } else {
      to[i].mul_(decay).add_(from[i], 1.0 - decay);
    }
  }
}

// The same model as `model` with its weights and buffers, for training.ema_decay: built without
// drawing from LibTorch's default generator, so that a run with an average trains exactly as the
// same run without one.
nn::SegmentationModel copy_for_average(const config::Config& config,
                                       nn::SegmentationModelImpl& model, torch::Device device) {
  at::Generator default_generator = at::detail::getDefaultCPUGenerator();
  const at::Tensor generator_state = default_generator.get_state();
  nn::SegmentationModel average = build_model(config.model);
  default_generator.set_state(generator_state);
  average->to(device);
  apply_precision(*average, config, device);
  blend(*average, model, 0.0);
  average->eval();
  return average;
}

// One update of the average after an optimiser step, with d = min(ema_decay, (1 + n) / (10 + n))
// after n updates, so that the first steps, far from where training goes, fade fast.
void update_average(Run& run) {
  if (!run.average) return;
  const double n = static_cast<double>(run.ema_updates);
  blend(*run.average, *run.model, std::min(run.config.training.ema_decay, (1.0 + n) / (10.0 + n)));
  ++run.ema_updates;
}

// The value of an epoch that checkpoint_best.pt minimises (NaN when it was not validated).
double criterion_value(const config::Config& config, const EpochRecord& record) {
  return config.valid.best_criterion == config::BestCriterion::kValGed ? record.val_ged
                                                                       : record.val_loss;
}

// Whether the covariance has trained by the end of the 1-based epoch `record_epoch`.
bool covariance_trained(const config::Config& config, int64_t record_epoch) {
  return config.model.kind == nn::ModelKind::kDeterministic ||
         record_epoch > config.training.mean_only_epochs;
}

// The covariance layers of the head, frozen while only the mean trains.
void set_covariance_trainable(nn::SegmentationModelImpl& model, bool trainable) {
  if (nn::StochasticSegmentationHeadImpl* head = model.head()) {
    for (auto& parameter : head->covariance_parameters()) parameter.set_requires_grad(trainable);
  }
}

// The loss of one batch; `value` is NaN when it is not finite. A covariance that overflowed is
// refused by LowRankNormal (InvalidCovariance) before a loss exists: a non-finite step like a NaN
// loss, while any other error stops training.
torch::Tensor batch_loss(Run& run, const data::TrainingBatch& batch, double& value,
                         const loss::BatchSlice& slice) {
  value = std::numeric_limits<double>::quiet_NaN();
  try {
    const at::Tensor masks = batch.masks.defined() ? batch.masks.to(run.device) : batch.masks;
    const nn::ModelOutput out = run.model->forward(batch.images.to(run.device), masks);
    const LowRankNormal* distribution = out.stochastic ? &out.stochastic->distribution : nullptr;
    torch::Tensor loss =
        run.loss_fn(out.mean_logits, distribution, batch.targets.to(run.device), run.noise, slice);
    value = loss.item<double>();
    return loss;
  } catch (const InvalidCovariance&) {
    return {};
  }
}

// One epoch of optimiser steps; returns its record without validation.
EpochRecord run_epoch(Run& run, int64_t epoch) {
  const auto epoch_start = Clock::now();
  const config::Config& config = run.config;
  const double lr = learning_rate(config.optimizer, config.scheduler, epoch);
  set_learning_rate(*run.optimizer, lr, config.optimizer);
  if (config.model.kind != nn::ModelKind::kDeterministic) {
    set_covariance_trainable(*run.model, epoch >= config.training.mean_only_epochs);
  }
  const int64_t steps = run.data->begin_epoch(run.generator);
  const int64_t batch_size = run.data->batch_size();
  double loss_sum = 0.0;
  int64_t good = 0, bad = 0;
  for (int64_t step = 0; step < steps; ++step) {
    data::TrainingBatch batch = run.data->next();
    // This rank's rows; the loss is their mean, weighted by their share of the global batch so
    // that the sum over ranks is the global batch's mean.
    loss::BatchSlice slice;
    double share = 1.0;
    if (run.world > 1) {
      const int64_t global = batch.images.size(0);
      TORCH_CHECK(global >= run.world, "training.batch_size ", global, " is smaller than the ",
                  run.world, " processes: every rank needs at least one example");
      const int64_t first = run.rank * global / run.world;
      const int64_t rows = (run.rank + 1) * global / run.world - first;
      batch.images = batch.images.narrow(0, first, rows);
      batch.targets = batch.targets.narrow(0, first, rows);
      if (batch.masks.defined()) batch.masks = batch.masks.narrow(0, first, rows);
      slice = {first, global};
      share = static_cast<double>(rows) / static_cast<double>(global);
    }
    run.optimizer->zero_grad();
    double value = 0.0;
    torch::Tensor loss = batch_loss(run, batch, value, slice);
    if (run.world > 1) {
      // The global loss; NaN on any rank makes every rank skip the step.
      at::Tensor total = at::full({1}, std::isfinite(value) ? value * share : NAN, at::kDouble);
      run.communicator->all_reduce_sum({total});
      value = total.item<double>();
    }
    if (!std::isfinite(value)) {
      ++bad;
      ++run.bad_total;
      TORCH_CHECK(
          run.bad_total <= config.training.max_bad_steps, "training stopped: ", run.bad_total,
          " steps had a non-finite loss (training.max_bad_steps = ", config.training.max_bad_steps,
          ")");
    } else {
      run.scaler.scale(run.world > 1 ? loss * share : loss).backward();
      if (run.world > 1) {
        std::vector<at::Tensor> grads;
        for (auto& parameter : run.model->parameters()) {
          if (parameter.grad().defined()) grads.push_back(parameter.mutable_grad());
        }
        run.communicator->all_reduce_sum(grads);
      }
      // An fp16 step whose scaled gradient overflowed is skipped and the scale halved (not a bad
      // step: the loss was finite); the average then skips it too.
      if (run.scaler.step(*run.optimizer)) update_average(run);
      loss_sum += value;
      ++good;
    }
    if (run.options.on_step && run.writes()) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
      const double images = static_cast<double>((step + 1) * batch_size);
      const double rate = images / std::max(elapsed, 1e-9);
      const double left_steps = static_cast<double>(
          (config.training.num_epochs - epoch - 1) * steps + (steps - step - 1));
      run.options.on_step({epoch, step, steps, value, rate, left_steps * batch_size / rate});
    }
  }
  run.data->end_epoch();
  EpochRecord record;
  record.epoch = epoch + 1;
  record.train_loss = good ? loss_sum / static_cast<double>(good) : NAN;
  record.lr = lr;
  record.bad_steps = bad;
  record.val_loss = NAN;
  record.val_ged = NAN;
  record.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
  return record;
}

// A copy of `source` at `target`, renamed into place (a failed copy never truncates `target`).
void copy_atomically(const fs::path& source, const fs::path& target) {
  io::write_atomically(target, [&](const fs::path& temporary) {
    std::error_code error;
    fs::copy_file(source, temporary, fs::copy_options::overwrite_existing, error);
    TORCH_CHECK(!error, "cannot write ", target.string(), ": ", error.message());
  });
}

// Validates when due, then writes the checkpoint, the best and kept copies, and the log.
void validate_and_save(Run& run, EpochRecord record, double epoch_start_seconds) {
  const config::Config& config = run.config;
  const int64_t epoch = record.epoch - 1;
  const auto start = Clock::now();
  const bool evaluate =
      (epoch + 1) % config.valid.eval_every == 0 || epoch + 1 == config.training.num_epochs;
  if (evaluate) {
    torch::NoGradGuard no_grad;
    run.model->eval();
    try {
      const Validation v = run.data->validate(run.scored(), run.loss_fn, run.device);
      record.val_loss = v.loss;
      record.val_ged = v.ged;
    } catch (const InvalidCovariance&) {
      // Not scored (NaN in the log), so never the best checkpoint on its merits.
      if (run.options.on_warning) {
        run.options.on_warning("epoch " + std::to_string(record.epoch) +
                               ": validation skipped: in evaluation mode the model gives a "
                               "non-finite covariance (batch norm's running statistics may not "
                               "have settled yet)");
      }
    }
    run.model->train();
  }
  record.seconds =
      epoch_start_seconds + std::chrono::duration<double>(Clock::now() - start).count();
  // checkpoint_best.pt: the lowest valid.best_criterion among the validated epochs whose
  // covariance has trained (a model of the mean-only warm-up is no distribution); the last epoch
  // when there is none.
  const bool trained = covariance_trained(config, record.epoch);
  const bool last_epoch = epoch + 1 == config.training.num_epochs;
  const double value = criterion_value(config, record);
  record.best =
      (evaluate && trained && value < run.best_value) || (last_epoch && std::isinf(run.best_value));
  const bool best = record.best;
  // The fallback keeps best_value infinite, so that the first epoch after the warm-up replaces it.
  if (best && evaluate && trained && std::isfinite(value)) {
    run.best_value = value;
    run.best_ged = record.val_ged;
  }
  run.records.push_back(record);
  TrainingState state;
  state.epoch = epoch + 1;
  state.best_ged = run.best_ged;
  state.best_criterion = config::to_string(config.valid.best_criterion);
  state.best_value = run.best_value;
  state.data_rng = run.generator.get_state();
  state.noise_rng = run.noise.get_state();
  // Dropout draws from LibTorch's default generator: without it --resume is not exact.
  state.torch_rng = at::detail::getDefaultCPUGenerator().get_state();
  state.log = run.records;
  if (run.scaler.enabled()) state.grad_scaler = run.scaler.state();
  state.ema_updates = run.ema_updates;
  save_checkpoint(run.last(), *run.model, *run.optimizer, state,
                  run.average ? run.average.get() : nullptr);
  if (best) copy_atomically(run.last(), run.options.job_dir / "checkpoint_best.pt");
  if (config.valid.keep_model_every > 0 && (epoch + 1) % config.valid.keep_model_every == 0) {
    copy_atomically(run.last(),
                    run.options.job_dir / ("checkpoint_epoch" + std::to_string(epoch + 1) + ".pt"));
  }
  write_train_log(run.options.job_dir / "train_log.csv", run.records);
}

// Restores the state of checkpoint_last.pt into `run`.
void resume(Run& run) {
  const TrainingState state = load_checkpoint(run.last(), *run.model, *run.optimizer,
                                              run.average ? run.average.get() : nullptr);
  run.model->to(run.device);
  if (run.average) {
    run.average->to(run.device);
    run.ema_updates = state.ema_updates;
  }
  // A checkpoint made on another kind of device holds another kind of generator state: the noise
  // then starts afresh, and the run continues, though not as an uninterrupted one would.
  if (state.noise_rng.numel() == run.noise.get_state().numel()) {
    std::lock_guard<std::mutex> lock(run.noise.mutex());
    run.noise.set_state(state.noise_rng);
  } else {
    {
      std::lock_guard<std::mutex> lock(run.noise.mutex());
      run.noise.set_current_seed(run.options.seed + 1 + static_cast<uint64_t>(state.epoch));
    }
    if (run.options.on_warning) {
      run.options.on_warning(run.last().string() +
                             " was written by a run on another kind of device: the Monte-Carlo "
                             "noise of the loss starts from a new seed, so the resumed run is not "
                             "the one an uninterrupted run on this device would have been");
    }
  }
  at::Generator default_generator = at::detail::getDefaultCPUGenerator();
  default_generator.set_state(state.torch_rng);
  run.generator.set_state(state.data_rng);
  run.start_epoch = state.epoch;
  run.records = state.log;
  if (state.grad_scaler) run.scaler.set_state(*state.grad_scaler);
  run.best_ged = state.best_ged;
  if (state.best_criterion == config::to_string(run.config.valid.best_criterion)) {
    run.best_value = state.best_value;
    return;
  }
  // Another criterion (or a checkpoint older than best_criterion): the best so far by this one is
  // read off the log: the last epoch marked best, unless it is the fallback of a run that had not
  // left the warm-up (or was not validated).
  run.best_ged = std::numeric_limits<double>::infinity();
  for (auto r = run.records.rbegin(); r != run.records.rend(); ++r) {
    if (!r->best) continue;
    const double value = criterion_value(run.config, *r);
    if (covariance_trained(run.config, r->epoch) && std::isfinite(value)) {
      run.best_value = value;
      run.best_ged = r->val_ged;
    }
    break;
  }
}

}  // namespace

std::vector<EpochRecord> train(const config::Config& config, const TrainOptions& options) {
  const torch::Device device = checked_device(options.device);
  const fs::path last = options.job_dir / "checkpoint_last.pt";
  // A new run needs a folder without one; a resumed run needs its checkpoint.
  const auto check_job_folder = [&] {
    TORCH_CHECK(options.resume || !fs::exists(last), "job folder ", options.job_dir.string(),
                " already holds a training run (checkpoint_last.pt); resume it or use another "
                "folder");
    TORCH_CHECK(!options.resume || fs::exists(last), "cannot resume: no checkpoint_last.pt in ",
                options.job_dir.string());
  };
  check_job_folder();
  if (device.is_cpu()) check_model_fits_in_memory(config.model);
  torch::manual_seed(options.seed);
  nn::SegmentationModel model = build_model(config.model);
  model->to(device);
  apply_precision(*model, config, device);
  std::unique_ptr<TrainingData> data = make_training_data(config, options.data, model->backbone());
  if (device.is_cpu()) {
    const auto [input_voxels, output_voxels] = data->example_voxels();
    check_step_fits_in_memory(config, model->backbone(), input_voxels, output_voxels);
  }
  Communicator* communicator = options.communicator;
  const int64_t rank = communicator ? communicator->rank() : 0;
  // Rank 0 alone owns the job folder: it creates, locks and writes it.
  std::optional<io::FolderLock> lock;
  if (rank == 0) {
    // Created once the data are known to be readable, so that a bad --data-dir or CSV leaves no
    // job folder behind.
    std::error_code error;
    fs::create_directories(options.job_dir, error);
    TORCH_CHECK(!error && fs::is_directory(options.job_dir), "cannot create the job folder ",
                options.job_dir.string());
    // One run per job folder at a time; checked again under the lock, which a run that started
    // meanwhile may have held.
    lock.emplace(options.job_dir, "job folder");
    check_job_folder();
    io::remove_leftovers(options.job_dir);
  }
  if (!options.resume && config.model.mean_bias_from_class_frequencies) {
    // Before the first step and the first checkpoint; a resumed run has its weights already.
    const std::vector<double> shares = data->class_frequencies(config.model.num_classes);
    const std::vector<double> bias = init_mean_bias(*model, shares);
    if (options.on_info && rank == 0) {
      std::ostringstream text;
      text << std::setprecision(4) << "model.mean_bias_init class_frequencies: class shares of "
           << "the training annotations";
      for (double s : shares) text << " " << s;
      text << "; mean bias";
      for (double b : bias) text << " " << b;
      options.on_info(text.str());
    }
  }
  Run run(config, options, device, model, std::move(data));
  run.communicator = communicator;
  run.rank = rank;
  run.world = communicator ? communicator->size() : 1;
  if (config.training.ema_decay > 0.0) run.average = copy_for_average(config, *run.model, device);
  if (options.resume) {
    resume(run);  // the job's config.json stays as it is; every rank reads checkpoint_last.pt
  } else if (rank == 0) {
    io::write_text_file(options.job_dir / "config.json", config.source.dump(2) + "\n");
  }
  if (run.world > 1) {
    // Every rank starts from rank 0's weights and batch-norm statistics.
    std::vector<at::Tensor> state;
    for (const auto& p : run.model->parameters()) state.push_back(p.data());
    for (const auto& b : run.model->buffers()) state.push_back(b);
    if (run.average) {  // a copy of each rank's own weights until now
      for (const auto& p : run.average->parameters()) state.push_back(p.data());
      for (const auto& b : run.average->buffers()) state.push_back(b);
    }
    communicator->broadcast(state);
  }
  for (int64_t epoch = run.start_epoch; epoch < config.training.num_epochs; ++epoch) {
    const EpochRecord record = run_epoch(run, epoch);
    if (run.writes()) validate_and_save(run, record, record.seconds);
  }
  if (!run.writes()) return run.records;
  if (config.valid.calibrate && config.model.kind != nn::ModelKind::kDeterministic &&
      fs::exists(options.job_dir / "checkpoint_best.pt")) {
    CalibrateOptions calibrate;
    calibrate.job_dir = options.job_dir;
    calibrate.data = options.data;
    calibrate.device = options.device;
    if (config.valid.calibration_band_on_train_and_val) {  // the splits in memory, not read again
      calibrate.band_reference = run.data->annotator_diversity(config.model.num_classes);
    }
    try {
      const evaluation::Calibration calibration =
          calibrate_job(config, calibrate, options.on_calibration);
      if (options.on_calibrated) options.on_calibrated(calibration);
    } catch (const InvalidCovariance&) {
      if (options.on_warning) {
        options.on_warning(
            "calibration skipped: checkpoint_best.pt gives a non-finite covariance in evaluation "
            "mode; no calibration.json written");
      }
    }
  }
  return run.records;
}

}  // namespace ssn::train
