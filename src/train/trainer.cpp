#include "ssn/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/optim.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "ssn/data/lidc.h"
#include "ssn/data/volumes.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/csv.h"
#include "ssn/io/image.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/metrics/metrics.h"
#include "ssn/nn/deepmedic.h"
#include "ssn/nn/unet.h"
#include "ssn/train/inference.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

data::LidcOptions lidc_options(const config::DataConfig& data) {
  data::LidcOptions options;
  options.crop = data.crop;
  options.size = data.size;
  options.annotators = data.annotators;
  return options;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::OptimizerConfig& c,
                                                        const std::vector<torch::Tensor>& params) {
  if (c.name == "Adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
  }
  if (c.name == "RMSprop") {
    return std::make_unique<torch::optim::RMSprop>(params, torch::optim::RMSpropOptions(c.lr)
                                                               .weight_decay(c.weight_decay)
                                                               .momentum(c.momentum)
                                                               .alpha(c.alpha));
  }
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(c.lr).weight_decay(c.weight_decay).momentum(c.momentum));
}

// MultiStepLR: lr * gamma^(number of milestones <= epoch).
double learning_rate(const config::Config& config, int64_t epoch) {
  double lr = config.optimizer.lr;
  for (int64_t milestone : config.scheduler.milestones) {
    if (epoch >= milestone) lr *= config.scheduler.gamma;
  }
  return lr;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// The covariance layers of the head, frozen while only the mean trains.
void set_covariance_trainable(nn::SegmentationModelImpl& model, bool trainable) {
  for (auto& item : model.named_parameters()) {
    if (item.key().find("log_cov_diag_l") != std::string::npos ||
        item.key().find("cov_factor_l") != std::string::npos) {
      item.value().set_requires_grad(trainable);
    }
  }
}

std::string log_csv(const std::vector<EpochRecord>& records) {
  std::ostringstream out;
  out << std::setprecision(10) << "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds\n";
  for (const auto& r : records) {
    out << r.epoch << "," << r.train_loss << "," << r.val_loss << "," << r.val_ged << "," << r.lr
        << "," << r.bad_steps << "," << r.seconds << "\n";
  }
  return out.str();
}

void save_checkpoint(const fs::path& path, nn::SegmentationModel& model,
                     torch::optim::Optimizer& optimizer, at::Generator& generator,
                     at::Generator& noise, int64_t epoch, double best_ged,
                     const std::vector<EpochRecord>& records) {
  io::write_atomically(path, [&](const fs::path& temporary) {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive, optimizer_archive;
    model->save(model_archive);
    optimizer.save(optimizer_archive);
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("epoch", torch::tensor(epoch));
    archive.write("best_ged", torch::tensor(best_ged, torch::kDouble));
    archive.write("rng", generator.get_state());
    archive.write("noise_rng", noise.get_state());
    // Dropout draws from LibTorch's default generator: without it --resume is not exact.
    archive.write("torch_rng", at::detail::getDefaultCPUGenerator().get_state());
    archive.write("log", c10::IValue(log_csv(records)));
    archive.save_to(temporary.string());
  });
}

struct Validation {
  double loss = 0.0;
  double ged = 0.0;
};

data::CsvColumns csv_columns(const config::DataConfig& d) {
  return {d.channels, d.target, d.sampling_mask};
}

// Patch geometry and augmentation from the config; axes count spatial axes from 0 in tensor order
// (z, y, x), as the reference's augmentation does on SimpleITK arrays.
data::PatchOptions patch_options(const config::Config& config, std::vector<int64_t> input,
                                 const nn::BackboneImpl& backbone) {
  const auto dims = static_cast<size_t>(config.model.dimensions);
  if (input.empty()) input.assign(dims, backbone.input_size_for(1));
  TORCH_CHECK(input.size() == dims, "input_patch_size must have ", dims,
              " sizes (one per spatial "
              "axis), got ",
              input.size());
  data::PatchOptions o;
  o.input_size = input;
  for (int64_t size : input) o.output_size.push_back(backbone.output_size(size));
  const auto& t = config.training;
  o.foreground_probability = t.foreground_probability;
  o.n_tries = t.n_tries;
  if (t.augment) {
    o.flip_probability = t.flip_probability;
    o.flip_axes = t.flip_axes;
    o.rotation_probability = t.rotation_probability;
    for (const auto& plane : t.rotation_planes) o.rotation_planes.emplace_back(plane[0], plane[1]);
    o.histogram_probability = t.histogram_probability;
  }
  return o;
}

// What the training loop needs from a data set: the batches of an epoch and a validation pass.
class TrainingData {
 public:
  virtual ~TrainingData() = default;
  /// Plans one epoch, drawing from `generator`; returns its number of steps.
  virtual int64_t begin_epoch(at::Generator& generator) = 0;
  virtual data::TrainingBatch next() = 0;
  /// Called after the last step, before `generator` is saved.
  virtual void end_epoch() = 0;
  virtual int64_t batch_size() const = 0;
  virtual Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                              torch::Device device) = 0;
};

// Mean loss and GED of the model's samples against `targets` [B, *spatial] (one annotation each)
// for one validation batch, summed over the batch.
Validation score_batch(nn::SegmentationModel& model, const at::Tensor& images,
                       const at::Tensor& targets, const at::Tensor& masks,
                       const std::vector<at::Tensor>& annotations, const config::Config& config,
                       const loss::SegmentationLoss& loss_fn, torch::Device device,
                       at::Generator& generator) {
  const nn::ModelOutput out =
      model->forward(images.to(device), masks.defined() ? masks.to(device) : masks);
  Validation result;
  const LowRankNormal* distribution = out.stochastic ? &out.stochastic->distribution : nullptr;
  at::Tensor samples;  // [B, N, *spatial]
  const int64_t batch = images.size(0);
  if (distribution != nullptr) {
    const LowRankNormal on_cpu(distribution->loc().cpu(), distribution->cov_factor().cpu(),
                               distribution->cov_diag().cpu(), distribution->event_shape());
    result.loss +=
        loss_fn(out.mean_logits.cpu(), &on_cpu, targets.cpu(), generator).item<double>() * batch;
    samples = on_cpu.to_event_shape(on_cpu.rsample(config.valid.num_samples, generator))
                  .argmax(/*dim=*/2)
                  .transpose(0, 1);
  } else {
    result.loss += loss_fn(out.mean_logits.cpu(), nullptr, targets.cpu()).item<double>() * batch;
    samples = out.mean_logits.cpu().argmax(/*dim=*/1).unsqueeze(1);
  }
  for (int64_t b = 0; b < batch; ++b) {
    result.ged +=
        metrics::distribution_metrics(samples[b], annotations[b], config.model.num_classes).ged;
  }
  return result;
}

class LidcData : public TrainingData {
 public:
  LidcData(const config::Config& config, const fs::path& data_dir)
      : config_(config),
        train_(data_dir, "train", lidc_options(config.data)),
        valid_(data_dir, "val", lidc_options(config.data)),
        batch_size_(std::min(config.training.batch_size, train_.size())) {}

  int64_t begin_epoch(at::Generator& generator) override {
    const int64_t n = train_.size();
    const int64_t steps = n / batch_size_;  // the last incomplete batch is dropped
    const at::Tensor order = at::randperm(n, generator, at::kLong);
    std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps));
    for (int64_t step = 0; step < steps; ++step) {
      for (int64_t b = 0; b < batch_size_; ++b) {
        batches[step].push_back(order[step * batch_size_ + b].item<int64_t>());
      }
    }
    prefetcher_ = std::make_unique<data::BatchPrefetcher>(train_, std::move(batches), generator,
                                                          config_.training.augment);
    return steps;
  }
  data::TrainingBatch next() override { return prefetcher_->next(); }
  void end_epoch() override { prefetcher_.reset(); }  // joined: the generator is at the epoch's end
  int64_t batch_size() const override { return batch_size_; }

  Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                      torch::Device device) override {
    at::Generator generator = at::detail::createCPUGenerator(12345);  // the same noise every time
    const int64_t cases = std::min(config_.valid.num_cases, valid_.size());
    Validation total;
    for (int64_t i = 0; i < cases; ++i) {
      const auto& example = valid_[i];
      const Validation v =
          score_batch(model, example.image.unsqueeze(0), example.annotations[0].unsqueeze(0),
                      at::Tensor(), {example.annotations}, config_, loss_fn, device, generator);
      total.loss += v.loss;
      total.ged += v.ged;
    }
    return {total.loss / static_cast<double>(cases), total.ged / static_cast<double>(cases)};
  }

 private:
  const config::Config& config_;
  data::LidcDataset train_, valid_;
  int64_t batch_size_;
  std::unique_ptr<data::BatchPrefetcher> prefetcher_;
};

// Patches of volumes (the reference's DeepMedic training): an epoch draws patches_per_image
// patches from each of images_per_epoch cases, loading at most max_cases_in_memory cases at once
// (in parallel) and shuffling the patches of each group of cases.
class VolumeData : public TrainingData {
 public:
  VolumeData(const config::Config& config, const fs::path& train_csv, const fs::path& valid_csv,
             const nn::BackboneImpl& backbone)
      : config_(config),
        train_(data::read_case_csv(train_csv, csv_columns(config.data))),
        valid_(data::read_case_csv(valid_csv, csv_columns(config.data))) {
    train_patch_ = patch_options(config, config.training.input_patch_size, backbone);
    valid_patch_ =
        patch_options(config,
                      config.valid.input_patch_size.empty() ? train_patch_.input_size
                                                            : config.valid.input_patch_size,
                      backbone);
    valid_patch_.flip_probability = valid_patch_.rotation_probability =
        valid_patch_.histogram_probability = 0.0;
  }

  int64_t begin_epoch(at::Generator& generator) override {
    const int64_t cases = config_.training.images_per_epoch;
    const at::Tensor order =
        at::randint(static_cast<int64_t>(train_.size()), {cases}, generator, at::kLong);
    epoch_cases_.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + cases);
    next_case_ = 0;
    generator_ = &generator;
    pending_.clear();
    const int64_t patches = cases * config_.training.patches_per_image;
    return std::max<int64_t>(1, patches / batch_size());
  }

  data::TrainingBatch next() override {
    if (static_cast<int64_t>(pending_.size()) < batch_size()) load_group();
    std::vector<PendingPatch> chosen;
    for (int64_t b = 0; b < batch_size() && !pending_.empty(); ++b) {
      chosen.push_back(std::move(pending_.back()));
      pending_.pop_back();
    }
    return make_batch(chosen, train_patch_);
  }
  void end_epoch() override { pending_.clear(); }
  int64_t batch_size() const override { return config_.training.batch_size; }

  Validation validate(nn::SegmentationModel& model, const loss::SegmentationLoss& loss_fn,
                      torch::Device device) override {
    // The same cases, patches and noise every time.
    at::Generator generator = at::detail::createCPUGenerator(12345);
    const int64_t cases =
        std::min<int64_t>(config_.valid.images_per_epoch, static_cast<int64_t>(valid_.size()));
    Validation total;
    int64_t count = 0;
    for (int64_t start = 0; start < cases; start += config_.valid.max_cases_in_memory) {
      const int64_t end = std::min(cases, start + config_.valid.max_cases_in_memory);
      std::vector<int64_t> indices;
      for (int64_t i = start; i < end; ++i) indices.push_back(i);
      const std::vector<PendingPatch> patches =
          draw_patches(valid_, indices, config_.valid.patches_per_image, valid_patch_, generator);
      const auto step = static_cast<size_t>(config_.valid.batch_size);
      for (size_t first = 0; first < patches.size(); first += step) {
        const std::vector<PendingPatch> chosen(
            patches.begin() + static_cast<int64_t>(first),
            patches.begin() + static_cast<int64_t>(std::min(patches.size(), first + step)));
        const data::TrainingBatch batch = make_batch(chosen, valid_patch_);
        std::vector<at::Tensor> annotations;
        for (int64_t b = 0; b < batch.targets.size(0); ++b) {
          annotations.push_back(batch.targets[b].unsqueeze(0));
        }
        const Validation v = score_batch(model, batch.images, batch.targets, batch.masks,
                                         annotations, config_, loss_fn, device, generator);
        total.loss += v.loss;
        total.ged += v.ged;
        count += batch.targets.size(0);
      }
    }
    return {total.loss / static_cast<double>(count), total.ged / static_cast<double>(count)};
  }

 private:
  // A patch not cut yet: its volume (kept alive while patches of it wait) and its random spec.
  struct PendingPatch {
    std::shared_ptr<const data::Volume> volume;
    data::PatchSpec spec;
  };

  // Patches are cut from their volumes only when their batch is due, so memory holds the volumes
  // of one group and one batch of patches.
  static data::TrainingBatch make_batch(const std::vector<PendingPatch>& chosen,
                                        const data::PatchOptions& options) {
    std::vector<at::Tensor> images, targets, masks;
    for (const auto& pending : chosen) {
      const data::Patch patch = data::make_patch(*pending.volume, pending.spec, options);
      images.push_back(patch.image);
      targets.push_back(patch.target);
      masks.push_back(patch.mask);
    }
    return {at::stack(images), at::stack(targets), at::stack(masks)};
  }

  // Loads the next group of the epoch's cases in parallel and draws their patches, shuffled.
  void load_group() {
    std::vector<int64_t> indices;
    while (next_case_ < static_cast<int64_t>(epoch_cases_.size()) &&
           static_cast<int64_t>(indices.size()) < config_.training.max_cases_in_memory) {
      indices.push_back(epoch_cases_[next_case_++]);
    }
    TORCH_CHECK(!indices.empty() || !pending_.empty(), "internal: the epoch ran out of patches");
    if (indices.empty()) return;
    std::vector<PendingPatch> patches = draw_patches(
        train_, indices, config_.training.patches_per_image, train_patch_, *generator_);
    const at::Tensor order =
        at::randperm(static_cast<int64_t>(patches.size()), *generator_, at::kLong);
    std::vector<PendingPatch> shuffled;
    for (int64_t i = 0; i < order.numel(); ++i) {
      shuffled.push_back(patches[order[i].item<int64_t>()]);
    }
    shuffled.insert(shuffled.end(), pending_.begin(), pending_.end());
    pending_ = std::move(shuffled);
  }

  // Loads the cases (in parallel: decoding NIfTI dominates) then draws their patches in order,
  // so the patches do not depend on the thread count.
  std::vector<PendingPatch> draw_patches(const std::vector<data::VolumeCase>& cases,
                                         const std::vector<int64_t>& indices, int64_t per_case,
                                         const data::PatchOptions& options,
                                         at::Generator& generator) {
    std::vector<std::shared_ptr<const data::Volume>> volumes(indices.size());
    at::parallel_for(0, static_cast<int64_t>(indices.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        volumes[i] = std::make_shared<const data::Volume>(data::load_volume(
            cases[indices[i]], config_.model.num_classes, config_.model.dimensions));
      }
    });
    std::vector<PendingPatch> patches;
    for (const auto& volume : volumes) {
      for (int64_t p = 0; p < per_case; ++p) {
        patches.push_back({volume, data::draw_patch(*volume, options, generator)});
      }
    }
    return patches;
  }

  const config::Config& config_;
  std::vector<data::VolumeCase> train_, valid_;
  data::PatchOptions train_patch_, valid_patch_;
  std::vector<int64_t> epoch_cases_;
  int64_t next_case_ = 0;
  std::vector<PendingPatch> pending_;
  at::Generator* generator_ = nullptr;  // the epoch's data generator (begin_epoch)
};

torch::Device checked_device(const std::string& name) {
  const torch::Device device(name);
  TORCH_CHECK(!device.is_cuda() || torch::cuda::is_available(), "--device ", name,
              ": this LibTorch build has no usable CUDA device (use --device cpu)");
  return device;
}

std::string file_stem(const std::string& id) {
  std::string stem = id;
  for (char& c : stem) {
    if (c == '/') c = '_';
  }
  return stem;
}

}  // namespace

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
  nn::SegmentationModel model(backbone, c.kind, c.num_classes, c.rank, c.epsilon);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    if (item.key().find("log_cov_diag_l.bias") != std::string::npos && c.log_diag_bias != 0.0) {
      item.value().fill_(c.log_diag_bias);
    }
    if (item.key().find("cov_factor_l.weight") != std::string::npos) {
      item.value().mul_(c.factor_init_scale);
    }
  }
  return model;
}

std::vector<EpochRecord> train(const config::Config& config, const TrainOptions& options) {
  const torch::Device device = checked_device(options.device);
  const fs::path last = options.job_dir / "checkpoint_last.pt";
  TORCH_CHECK(options.resume || !fs::exists(last), "--job-dir ", options.job_dir.string(),
              " already holds a training run (checkpoint_last.pt); use --resume to continue it or "
              "another folder");
  TORCH_CHECK(!options.resume || fs::exists(last), "--resume: no checkpoint_last.pt in ",
              options.job_dir.string());
  torch::manual_seed(options.seed);
  nn::SegmentationModel model = build_model(config.model);
  model->to(device);
  std::unique_ptr<TrainingData> data;
  if (config.data.dataset == "csv") {
    TORCH_CHECK(!options.train_csv.empty() && !options.valid_csv.empty(),
                "the config's data section describes CSV-indexed volumes: give --train-csv-path "
                "and --valid-csv-path");
    if (config.training.elastic_requested) {
      std::fprintf(stderr,
                   "ssn: warning: training.augmentation.RandomElasticDeformationCoarsePerlinNoise "
                   "is not implemented by ssn; training without it\n");
    }
    data = std::make_unique<VolumeData>(config, options.train_csv, options.valid_csv,
                                        model->backbone());
  } else {
    TORCH_CHECK(config.model.dimensions == 2,
                "the LIDC crops layout (--data-dir) is 2-D, but the model has ",
                config.model.dimensions, " spatial dimensions");
    TORCH_CHECK(!options.data_dir.empty(),
                "the config's data section describes the LIDC crops "
                "layout: give --data-dir");
    data = std::make_unique<LidcData>(config, options.data_dir);
  }
  // Created once the data are known to be readable, so that a bad --data-dir or CSV leaves no
  // job folder behind.
  std::error_code error;
  fs::create_directories(options.job_dir, error);
  TORCH_CHECK(!error && fs::is_directory(options.job_dir), "cannot create --job-dir ",
              options.job_dir.string());
  io::write_text_file(options.job_dir / "config.json", config.source.dump(2) + "\n");
  auto optimizer = make_optimizer(config.optimizer, model->parameters());
  // Two streams: `generator` for the data (batch order, annotator, augmentation), used by the
  // prefetching thread during an epoch; `noise` for the Monte-Carlo samples of the loss.
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  at::Generator noise = at::detail::createCPUGenerator(options.seed + 1);
  const loss::SegmentationLoss loss_fn({config.loss.name == "CrossEntropyLoss"
                                            ? loss::LossKind::kCrossEntropy
                                            : loss::LossKind::kStochasticMcIntegral,
                                        config.loss.num_mc_samples});

  int64_t start_epoch = 0;
  double best_ged = std::numeric_limits<double>::infinity();
  std::vector<EpochRecord> records;
  if (options.resume) {
    torch::serialize::InputArchive archive;
    archive.load_from(last.string());
    torch::serialize::InputArchive model_archive, optimizer_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model->load(model_archive);
    model->to(device);
    optimizer->load(optimizer_archive);
    torch::Tensor epoch, best, rng, noise_rng;
    archive.read("epoch", epoch);
    archive.read("best_ged", best);
    archive.read("rng", rng);
    archive.read("noise_rng", noise_rng);
    noise.set_state(noise_rng);
    torch::Tensor torch_rng;
    archive.read("torch_rng", torch_rng);
    at::Generator default_generator = at::detail::getDefaultCPUGenerator();
    default_generator.set_state(torch_rng);
    c10::IValue log;
    archive.read("log", log);
    start_epoch = epoch.item<int64_t>();
    best_ged = best.item<double>();
    generator.set_state(rng);
    records = parse_train_log(log.toStringRef(), last.string() + " (log)");
  }

  int64_t bad_total = 0;
  for (int64_t epoch = start_epoch; epoch < config.training.num_epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const double lr = learning_rate(config, epoch);
    set_learning_rate(*optimizer, lr);
    if (config.model.kind != nn::ModelKind::kDeterministic) {
      set_covariance_trainable(*model, epoch >= config.training.mean_only_epochs);
    }
    const int64_t steps = data->begin_epoch(generator);
    const int64_t batch_size = data->batch_size();
    double loss_sum = 0.0;
    int64_t good = 0, bad = 0;
    for (int64_t step = 0; step < steps; ++step) {
      const data::TrainingBatch batch = data->next();
      optimizer->zero_grad();
      torch::Tensor loss;
      double value = std::numeric_limits<double>::quiet_NaN();
      try {
        const nn::ModelOutput out = model->forward(
            batch.images.to(device), batch.masks.defined() ? batch.masks.to(device) : batch.masks);
        const LowRankNormal* distribution =
            out.stochastic ? &out.stochastic->distribution : nullptr;
        loss = loss_fn(out.mean_logits, distribution, batch.targets.to(device), noise);
        value = loss.item<double>();
      } catch (const c10::Error& error) {
        // A covariance that overflowed is caught by LowRankNormal's checks before the loss exists;
        // it is a non-finite step like a NaN loss. Any other error stops training.
        if (std::string(error.what_without_backtrace()).find("finite") == std::string::npos) throw;
      }
      if (!std::isfinite(value)) {
        ++bad;
        ++bad_total;
        TORCH_CHECK(bad_total <= config.training.max_bad_steps, "training stopped: ", bad_total,
                    " steps had a non-finite loss (training.max_bad_steps = ",
                    config.training.max_bad_steps, ")");
      } else {
        loss.backward();
        optimizer->step();
        loss_sum += value;
        ++good;
      }
      if (options.on_step) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
        const double images = static_cast<double>((step + 1) * batch_size);
        const double rate = images / std::max(elapsed, 1e-9);
        const double left_steps = static_cast<double>(
            (config.training.num_epochs - epoch - 1) * steps + (steps - step - 1));
        options.on_step({epoch, step, steps, value, rate, left_steps * batch_size / rate});
      }
    }
    data->end_epoch();
    EpochRecord record;
    record.epoch = epoch + 1;
    record.train_loss = good ? loss_sum / static_cast<double>(good) : NAN;
    record.lr = lr;
    record.bad_steps = bad;
    record.val_loss = NAN;
    record.val_ged = NAN;
    const bool evaluate =
        (epoch + 1) % config.valid.eval_every == 0 || epoch + 1 == config.training.num_epochs;
    if (evaluate) {
      torch::NoGradGuard no_grad;
      model->eval();
      const Validation v = data->validate(model, loss_fn, device);
      model->train();
      record.val_loss = v.loss;
      record.val_ged = v.ged;
    }
    record.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    records.push_back(record);
    const bool best = evaluate && record.val_ged < best_ged;
    if (best) best_ged = record.val_ged;
    save_checkpoint(last, model, *optimizer, generator, noise, epoch + 1, best_ged, records);
    if (best)
      fs::copy_file(last, options.job_dir / "checkpoint_best.pt",
                    fs::copy_options::overwrite_existing);
    if (config.valid.keep_model_every > 0 && (epoch + 1) % config.valid.keep_model_every == 0) {
      fs::copy_file(last,
                    options.job_dir / ("checkpoint_epoch" + std::to_string(epoch + 1) + ".pt"),
                    fs::copy_options::overwrite_existing);
    }
    io::write_text_file(options.job_dir / "train_log.csv", log_csv(records));
  }
  return records;
}

std::vector<EpochRecord> parse_train_log(const std::string& csv, const std::string& source) {
  std::vector<EpochRecord> records;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  TORCH_CHECK(line == "epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds", source,
              ": expected the header epoch,train_loss,val_loss,val_ged,lr,bad_steps,seconds, got '",
              line, "'");
  for (int line_number = 2; std::getline(in, line); ++line_number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    // strtod, unlike operator>>, reads the "nan" of epochs without validation.
    std::vector<double> values;
    const char* cursor = line.c_str();
    for (;;) {
      char* end = nullptr;
      values.push_back(std::strtod(cursor, &end));
      TORCH_CHECK(end != cursor && (*end == ',' || *end == '\0'), source, " line ", line_number,
                  ": expected 7 numbers separated by commas, got '", line, "'");
      if (*end == '\0') break;
      cursor = end + 1;
    }
    TORCH_CHECK(values.size() == 7, source, " line ", line_number, ": expected 7 fields, got ",
                values.size());
    EpochRecord r;
    r.epoch = static_cast<int64_t>(values[0]);
    r.train_loss = values[1];
    r.val_loss = values[2];
    r.val_ged = values[3];
    r.lr = values[4];
    r.bad_steps = static_cast<int64_t>(values[5]);
    r.seconds = values[6];
    records.push_back(r);
  }
  return records;
}

namespace {

// The predictions folder of CSV-indexed volumes: each case predicted whole by tiling, every map
// written with the geometry of the case's first channel.
int64_t predict_volumes(const config::Config& config, const PredictOptions& options,
                        nn::SegmentationModel& model, torch::Device device) {
  TORCH_CHECK(!options.test_csv.empty(),
              "the config's data section describes CSV-indexed "
              "volumes: give --test-csv-path");
  data::CsvColumns columns = csv_columns(config.data);
  if (!io::read_csv(options.test_csv).column.count(columns.target)) columns.target.clear();
  const std::vector<data::VolumeCase> cases = data::read_case_csv(options.test_csv, columns);
  TilingOptions tiling;
  tiling.tile_input = config.test.input_patch_size.empty() ? config.training.input_patch_size
                                                           : config.test.input_patch_size;
  if (tiling.tile_input.empty()) {
    tiling.tile_input.assign(static_cast<size_t>(config.model.dimensions),
                             model->backbone().input_size_for(1));
  }
  tiling.batch_size = config.test.batch_size;
  tiling.device = device;
  io::write_folder_atomically(options.out, "--out", [&](const fs::path& staging) {
    std::ostringstream csv;
    csv << "id,image,prediction,logit_mean,cov_diag,cov_factor,annotations\n";
    for (const auto& c : cases) {
      const data::Volume volume =
          data::load_volume(c, config.model.num_classes, config.model.dimensions);
      const ImagePrediction prediction = predict_image(model, volume.image, volume.mask, tiling);
      const std::string stem = file_stem(c.id);
      const auto& geometry = volume.geometry;
      io::write_float_image(staging / (stem + "_logit_mean.nii.gz"), prediction.mean, geometry);
      io::write_float_image(staging / (stem + "_cov_diag.nii.gz"), prediction.cov_diag, geometry);
      io::write_float_image(staging / (stem + "_cov_factor.nii.gz"), prediction.cov_factor,
                            geometry);
      io::write_label_image(staging / (stem + "_prediction.nii.gz"), prediction.mean.argmax(0),
                            geometry);
      io::write_float_image(staging / (stem + "_image.nii.gz"), volume.image[0], geometry);
      std::string annotations;
      if (volume.target.defined()) {
        annotations = stem + "_l1.nii.gz";
        io::write_label_image(staging / annotations, volume.target, geometry);
      }
      csv << stem << "," << stem << "_image.nii.gz," << stem << "_prediction.nii.gz," << stem
          << "_logit_mean.nii.gz," << stem << "_cov_diag.nii.gz," << stem << "_cov_factor.nii.gz,"
          << annotations << "\n";
    }
    io::write_text_file(staging / "prediction.csv", csv.str());
  });
  return static_cast<int64_t>(cases.size());
}

}  // namespace

int64_t predict(const config::Config& config, const PredictOptions& options) {
  const torch::Device device = checked_device(options.device);
  TORCH_CHECK(fs::is_regular_file(options.checkpoint), "--checkpoint ", options.checkpoint.string(),
              ": no such file");
  TORCH_CHECK(!fs::exists(options.out) || fs::is_empty(options.out), "--out ", options.out.string(),
              " already exists and is not empty");
  nn::SegmentationModel model = build_model(config.model);
  {
    torch::serialize::InputArchive archive, model_archive;
    archive.load_from(options.checkpoint.string());
    archive.read("model", model_archive);
    model->load(model_archive);
  }
  model->to(device);
  model->eval();
  if (config.data.dataset == "csv") return predict_volumes(config, options, model, device);
  TORCH_CHECK(!options.data_dir.empty(),
              "the config's data section describes the LIDC crops "
              "layout: give --data-dir");
  const data::LidcDataset dataset(options.data_dir, options.split, lidc_options(config.data));
  io::write_folder_atomically(options.out, "--out", [&](const fs::path& staging) {
    std::ostringstream csv;
    csv << "id,image,prediction,logit_mean,cov_diag,cov_factor,annotations\n";
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < dataset.size(); ++i) {
      const data::LidcExample& example = dataset[i];
      const std::string stem = file_stem(example.id);
      const nn::ModelOutput out = model->forward(example.image.unsqueeze(0).to(device));
      const at::Tensor mean = out.mean_logits[0].cpu();  // [C, H, W]
      at::Tensor cov_diag, cov_factor;
      if (out.stochastic) {
        cov_diag = out.stochastic->cov_diag[0].cpu();
        cov_factor = out.stochastic->cov_factor[0].cpu();
        if (cov_factor.size(0) == 0) cov_factor = at::zeros_like(mean);  // diagonal: P = 0, R = 1
      } else {
        cov_diag = at::full_like(mean, 1e-12);
        cov_factor = at::zeros_like(mean);
      }
      io::write_float_image(staging / (stem + "_logit_mean.nii.gz"), mean);
      io::write_float_image(staging / (stem + "_cov_diag.nii.gz"), cov_diag);
      io::write_float_image(staging / (stem + "_cov_factor.nii.gz"), cov_factor);
      io::write_label_image(staging / (stem + "_prediction.png"), mean.argmax(0) * 255);
      const at::Tensor grey = example.image[0];
      io::write_label_image(
          staging / (stem + "_image.png"),
          ((grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-6) * 255).round());
      std::string annotations;
      for (int64_t a = 0; a < example.annotations.size(0); ++a) {
        const std::string name = stem + "_l" + std::to_string(a + 1) + ".png";
        io::write_label_image(staging / name, example.annotations[a] * 255);
        annotations += (a ? ";" : "") + name;
      }
      csv << stem << "," << stem << "_image.png," << stem << "_prediction.png," << stem
          << "_logit_mean.nii.gz," << stem << "_cov_diag.nii.gz," << stem << "_cov_factor.nii.gz,"
          << annotations << "\n";
    }
    io::write_text_file(staging / "prediction.csv", csv.str());
  });
  return dataset.size();
}

}  // namespace ssn::train
