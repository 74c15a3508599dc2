#include "ssn/train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "ssn/data/lidc.h"
#include "ssn/io/atomic_file.h"
#include "ssn/io/image.h"
#include "ssn/loss/segmentation_loss.h"
#include "ssn/metrics/metrics.h"

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
    return std::make_unique<torch::optim::RMSprop>(
        params,
        torch::optim::RMSpropOptions(c.lr).weight_decay(c.weight_decay).momentum(c.momentum));
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
    archive.write("log", c10::IValue(log_csv(records)));
    archive.save_to(temporary.string());
  });
}

struct Validation {
  double loss = 0.0;
  double ged = 0.0;
};

Validation validate(nn::SegmentationModel& model, const data::LidcDataset& dataset,
                    const config::Config& config, const loss::SegmentationLoss& loss_fn,
                    torch::Device device) {
  torch::NoGradGuard no_grad;
  model->eval();
  at::Generator generator = at::detail::createCPUGenerator(12345);  // the same noise every time
  const int64_t cases = std::min(config.valid.num_cases, dataset.size());
  Validation result;
  for (int64_t i = 0; i < cases; ++i) {
    const auto& example = dataset[i];
    const nn::ModelOutput out = model->forward(example.image.unsqueeze(0).to(device));
    const auto target = example.annotations[0].unsqueeze(0).to(device);
    const LowRankNormal* distribution = out.stochastic ? &out.stochastic->distribution : nullptr;
    at::Tensor samples;
    if (distribution != nullptr) {
      const at::Tensor cpu_mean = distribution->loc().cpu();
      const LowRankNormal on_cpu(cpu_mean, distribution->cov_factor().cpu(),
                                 distribution->cov_diag().cpu(), distribution->event_shape());
      result.loss +=
          loss_fn(out.mean_logits.cpu(), &on_cpu, target.cpu(), generator).item<double>();
      samples = on_cpu.to_event_shape(on_cpu.rsample(config.valid.num_samples, generator))
                    .squeeze(1)
                    .argmax(1);
    } else {
      result.loss += loss_fn(out.mean_logits.cpu(), nullptr, target.cpu()).item<double>();
      samples = out.mean_logits.cpu().argmax(1);
    }
    result.ged +=
        metrics::distribution_metrics(samples, example.annotations, config.model.num_classes).ged;
  }
  model->train();
  result.loss /= static_cast<double>(cases);
  result.ged /= static_cast<double>(cases);
  return result;
}

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
  auto backbone = std::make_shared<nn::UNet2dImpl>(nn::UNetOptions(c.input_channels, c.filters)
                                                       .convs_per_level(c.convs_per_level)
                                                       .normalisation(c.normalisation));
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
  std::error_code error;
  fs::create_directories(options.job_dir, error);
  TORCH_CHECK(!error && fs::is_directory(options.job_dir), "cannot create --job-dir ",
              options.job_dir.string());
  const fs::path last = options.job_dir / "checkpoint_last.pt";
  TORCH_CHECK(options.resume || !fs::exists(last), "--job-dir ", options.job_dir.string(),
              " already holds a training run (checkpoint_last.pt); use --resume to continue it or "
              "another folder");
  TORCH_CHECK(!options.resume || fs::exists(last), "--resume: no checkpoint_last.pt in ",
              options.job_dir.string());
  io::write_text_file(options.job_dir / "config.json", config.source.dump(2) + "\n");

  const data::LidcDataset train_set(options.data_dir, "train", lidc_options(config.data));
  const data::LidcDataset valid_set(options.data_dir, "val", lidc_options(config.data));

  torch::manual_seed(options.seed);
  nn::SegmentationModel model = build_model(config.model);
  model->to(device);
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
    c10::IValue log;
    archive.read("log", log);
    start_epoch = epoch.item<int64_t>();
    best_ged = best.item<double>();
    generator.set_state(rng);
    records = parse_train_log(log.toStringRef(), last.string() + " (log)");
  }

  const int64_t n = train_set.size();
  const int64_t batch_size = std::min(config.training.batch_size, n);
  const int64_t steps = n / batch_size;  // the last incomplete batch is dropped
  int64_t bad_total = 0;
  for (int64_t epoch = start_epoch; epoch < config.training.num_epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const double lr = learning_rate(config, epoch);
    set_learning_rate(*optimizer, lr);
    if (config.model.kind != nn::ModelKind::kDeterministic) {
      set_covariance_trainable(*model, epoch >= config.training.mean_only_epochs);
    }
    const at::Tensor order = at::randperm(n, generator, at::kLong);
    std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps));
    for (int64_t step = 0; step < steps; ++step) {
      for (int64_t b = 0; b < batch_size; ++b) {
        batches[step].push_back(order[step * batch_size + b].item<int64_t>());
      }
    }
    auto prefetcher = std::make_unique<data::BatchPrefetcher>(train_set, std::move(batches),
                                                              generator, config.training.augment);
    double loss_sum = 0.0;
    int64_t good = 0, bad = 0;
    for (int64_t step = 0; step < steps; ++step) {
      const data::TrainingBatch batch = prefetcher->next();
      optimizer->zero_grad();
      torch::Tensor loss;
      double value = std::numeric_limits<double>::quiet_NaN();
      try {
        const nn::ModelOutput out = model->forward(batch.images.to(device));
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
    prefetcher.reset();  // joined: the data generator is at the end of this epoch
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
      const Validation v = validate(model, valid_set, config, loss_fn, device);
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
  const data::LidcDataset dataset(options.data_dir, options.split, lidc_options(config.data));
  const fs::path staging = options.out.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(staging);
  fs::create_directories(staging);
  std::ostringstream csv;
  csv << "id,image,prediction,logit_mean,cov_diag,cov_factor,annotations\n";
  torch::NoGradGuard no_grad;
  try {
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
    if (fs::exists(options.out)) fs::remove(options.out);
    fs::rename(staging, options.out);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    throw;
  }
  return dataset.size();
}

}  // namespace ssn::train
