#pragma once

// The one place where ssn checkpoints are written and read: `ssn train` (every epoch, and
// --resume), `ssn predict` and whatever else loads a trained model. A checkpoint is a LibTorch
// archive with the keys model, optimizer, epoch, best_ged, best_criterion, best_value, rng,
// noise_rng, torch_rng and log, grad_scaler in fp16 training, and training_model and ema_updates
// where the weights are averaged (training.ema_decay: `model` then holds the average, the weights
// that predict), as docs/file-formats.md says; each written once, by save_checkpoint.

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ssn/io/torch_file.h"
#include "ssn/nn/segmentation_model.h"
#include "ssn/train/grad_scaler.h"
#include "ssn/train/train_log.h"

namespace ssn::train {

/// Everything of a training run besides the weights and the optimiser.
struct TrainingState {
  /// Epochs done.
  int64_t epoch = 0;
  /// The validation GED of checkpoint_best.pt's epoch (infinity while no epoch after the mean-only
  /// warm-up has been validated).
  double best_ged = std::numeric_limits<double>::infinity();
  /// The criterion that chose checkpoint_best.pt (config::to_string(BestCriterion)) and its value
  /// there, exactly; checkpoints written before these keys read as empty and infinity.
  std::string best_criterion;
  double best_value = std::numeric_limits<double>::infinity();
  /// Generator states (at::Generator::get_state): the data generator, the Monte-Carlo noise of the
  /// loss, and LibTorch's default CPU generator (dropout draws from it).
  at::Tensor data_rng, noise_rng, torch_rng;
  std::vector<EpochRecord> log;
  /// The loss scale of fp16 training (key grad_scaler: [scale, growth_tracker]); absent otherwise.
  std::optional<GradScalerState> grad_scaler;
  /// Updates of the average of the weights so far (training.ema_decay; 0 without it).
  int64_t ema_updates = 0;
};

/// Writes the checkpoint to `path` atomically (a kill never leaves a half-written file there).
/// With `average` (training.ema_decay), `model` is stored as training_model and `average` as
/// model, the weights that prediction loads.
void save_checkpoint(const std::filesystem::path& path, nn::SegmentationModelImpl& model,
                     torch::optim::Optimizer& optimizer, const TrainingState& state,
                     nn::SegmentationModelImpl* average = nullptr);

/// Loads a checkpoint written by save_checkpoint into `model` (built from the same config) and
/// `optimizer`, and returns the rest of the state; `average` must be given exactly when the
/// checkpoint holds one. Errors name the file.
TrainingState load_checkpoint(const std::filesystem::path& path, nn::SegmentationModelImpl& model,
                              torch::optim::Optimizer& optimizer,
                              nn::SegmentationModelImpl* average = nullptr);

/// Loads only the weights of a checkpoint into `model` (prediction). Errors name the file.
void load_model_weights(const std::filesystem::path& path, nn::SegmentationModelImpl& model);

/// The weights of a checkpoint by ssn's names (backbone.<...>, head.<...>), in the model's order,
/// without building the model: its archive is walked. Errors name the file.
std::vector<io::NamedTensor> read_checkpoint_weights(const std::filesystem::path& path);

}  // namespace ssn::train
