#include "ssn/train/checkpoint.h"

#include <torch/serialize.h>

#include <cmath>
#include <sstream>
#include <string>

#include "ssn/io/atomic_file.h"
#include "ssn/io/zip.h"

namespace ssn::train {
namespace {

namespace fs = std::filesystem;

// Runs `body` and prefixes any LibTorch error with the checkpoint's path.
template <typename Body>
void naming_file(const fs::path& path, const char* what, Body&& body) {
  try {
    body();
  } catch (const c10::Error& error) {
    TORCH_CHECK(false, "cannot ", what, " the checkpoint ", path.string(), ": ",
                error.what_without_backtrace());
  }
}

torch::serialize::InputArchive open_archive(const fs::path& path) {
  TORCH_CHECK(fs::is_regular_file(path), "checkpoint ", path.string(), ": no such file");
  io::check_zip_integrity(path);  // LibTorch would load a damaged record as other weights
  torch::serialize::InputArchive archive;
  naming_file(path, "read", [&] { archive.load_from(path.string()); });
  return archive;
}

void read_model(const fs::path& path, torch::serialize::InputArchive& archive,
                nn::SegmentationModelImpl& model, const char* key = "model") {
  naming_file(path, "load the model of", [&] {
    torch::serialize::InputArchive model_archive;
    archive.read(key, model_archive);
    model.load(model_archive);
  });
}

// Appends the tensors of `archive` (a module saved by Module::save: its parameters and buffers,
// then its children as nested archives) to `out`, names prefixed by `prefix`.
void walk_archive(torch::serialize::InputArchive& archive, const std::string& prefix,
                  std::vector<io::NamedTensor>& out) {
  for (const std::string& key : archive.keys()) {
    torch::Tensor tensor;
    torch::serialize::InputArchive child;
    if (archive.try_read(key, tensor)) {
      out.push_back({prefix + key, tensor});
    } else if (archive.try_read(key, child)) {
      walk_archive(child, prefix + key + ".", out);
    }
  }
}

}  // namespace

std::vector<io::NamedTensor> read_checkpoint_weights(const fs::path& path) {
  torch::serialize::InputArchive archive = open_archive(path);
  std::vector<io::NamedTensor> tensors;
  naming_file(path, "read the model of", [&] {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    walk_archive(model_archive, "", tensors);
  });
  TORCH_CHECK(!tensors.empty(), "checkpoint ", path.string(), " holds no model tensors");
  return tensors;
}

void save_checkpoint(const fs::path& path, nn::SegmentationModelImpl& model,
                     torch::optim::Optimizer& optimizer, const TrainingState& state,
                     nn::SegmentationModelImpl* average) {
  // Serialised in memory first: LibTorch's zip writer finishes the file in a destructor, where a
  // full disk aborts the process; the bytes then go to disk through checked writes.
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
    optimizer.save(optimizer_archive);
    if (average) {
      torch::serialize::OutputArchive training_archive;
      model.save(training_archive);
      average->save(model_archive);
      archive.write("training_model", training_archive);
      archive.write("ema_updates", torch::tensor(state.ema_updates));
    } else {
      model.save(model_archive);
    }
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("epoch", torch::tensor(state.epoch));
    archive.write("best_ged", torch::tensor(state.best_ged, torch::kDouble));
    archive.write("best_criterion", c10::IValue(state.best_criterion));
    archive.write("best_value", torch::tensor(state.best_value, torch::kDouble));
    archive.write("rng", state.data_rng);
    archive.write("noise_rng", state.noise_rng);
    archive.write("torch_rng", state.torch_rng);
    archive.write("log", c10::IValue(format_train_log(state.log)));
    if (state.grad_scaler) {
      archive.write("grad_scaler",
                    torch::tensor({state.grad_scaler->scale,
                                   static_cast<double>(state.grad_scaler->growth_tracker)},
                                  torch::kDouble));
    }
    naming_file(path, "write", [&] { archive.save_to(bytes); });
  }
  io::write_text_file(path, bytes.str());
}

TrainingState load_checkpoint(const fs::path& path, nn::SegmentationModelImpl& model,
                              torch::optim::Optimizer& optimizer,
                              nn::SegmentationModelImpl* average) {
  torch::serialize::InputArchive archive = open_archive(path);
  TrainingState state;
  torch::serialize::InputArchive training_archive;
  const bool averaged = archive.try_read("training_model", training_archive);
  TORCH_CHECK(averaged == (average != nullptr), "checkpoint ", path.string(),
              averaged ? " holds an average of the weights, but the config has no "
                         "training.ema_decay"
                       : " holds no average of the weights, but the config sets "
                         "training.ema_decay: resume with the config that wrote it");
  if (averaged) {
    read_model(path, archive, model, "training_model");
    read_model(path, archive, *average);
    naming_file(path, "read the training state of", [&] {
      torch::Tensor updates;
      archive.read("ema_updates", updates);
      TORCH_CHECK(updates.numel() == 1 && updates.item<int64_t>() >= 0,
                  "ema_updates: expected one count >= 0");
      state.ema_updates = updates.item<int64_t>();
    });
  } else {
    read_model(path, archive, model);
  }
  naming_file(path, "read the training state of", [&] {
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    try {
      optimizer.load(optimizer_archive);
    } catch (const c10::Error& error) {
      // LibTorch compares the parameter groups, which optimizer.<kind>.covariance_lr_factor
      // decides (1: one group; otherwise two).
      TORCH_CHECK(false, "its optimiser state does not fit this config's optimiser (",
                  error.what_without_backtrace(),
                  "): was it written with another optimizer.<kind>.covariance_lr_factor, 1 "
                  "against another value?");
    }
    torch::Tensor epoch, best_ged;
    archive.read("epoch", epoch);
    archive.read("best_ged", best_ged);
    archive.read("rng", state.data_rng);
    archive.read("noise_rng", state.noise_rng);
    archive.read("torch_rng", state.torch_rng);
    c10::IValue log;
    archive.read("log", log);
    state.epoch = epoch.item<int64_t>();
    state.best_ged = best_ged.item<double>();
    c10::IValue criterion;
    torch::Tensor best_value;
    if (archive.try_read("best_criterion", criterion) &&
        archive.try_read("best_value", best_value)) {
      TORCH_CHECK(criterion.isString() && best_value.numel() == 1,
                  "best_criterion / best_value: expected a string and one number");
      state.best_criterion = criterion.toStringRef();
      state.best_value = best_value.item<double>();
    }
    state.log = parse_train_log(log.toStringRef(), path.string() + " (log)");
    torch::Tensor scaler;
    if (archive.try_read("grad_scaler", scaler)) {
      TORCH_CHECK(scaler.numel() == 2 && scaler.scalar_type() == torch::kDouble,
                  "grad_scaler: expected 2 float64 values, got ", scaler.numel());
      const double scale = scaler[0].item<double>(), tracker = scaler[1].item<double>();
      TORCH_CHECK(std::isfinite(scale) && scale > 0 && tracker >= 0,
                  "grad_scaler: expected a positive scale, got ", scale);
      state.grad_scaler = GradScalerState{scale, static_cast<int64_t>(tracker)};
    }
  });
  return state;
}

void load_model_weights(const fs::path& path, nn::SegmentationModelImpl& model) {
  torch::serialize::InputArchive archive = open_archive(path);
  read_model(path, archive, model);
}

}  // namespace ssn::train
