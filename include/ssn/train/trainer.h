#pragma once

// `ssn train`: set-up, then epochs of run_epoch and validate_and_save. The pieces live in their
// own files: model_factory.h (what a config builds), training_data.h (the data sources),
// checkpoint.h (save / load), train_log.h (the log), predict.h (prediction writing).

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/train/distributed.h"
#include "ssn/train/train_log.h"
#include "ssn/train/training_data.h"

namespace ssn::train {

struct StepReport {
  int64_t epoch = 0, step = 0, steps = 0;
  double loss = 0.0, images_per_second = 0.0, seconds_left = 0.0;
};

struct TrainOptions {
  /// Where the data are (data_dir for the LIDC crops layout, train_csv / valid_csv for volumes).
  DataPaths data;
  /// The job folder: config.json, train_log.csv, checkpoint_last.pt, checkpoint_best.pt.
  std::filesystem::path job_dir;
  uint64_t seed = 0;
  /// Continue the run of job_dir from its checkpoint_last.pt.
  bool resume = false;
  std::string device = "cpu";
  /// Called after every step (progress bar); and once per skipped non-finite step with loss NaN.
  std::function<void(const StepReport&)> on_step;
  /// Progress of the calibration after the last epoch (config.valid.calibrate), and its result.
  runtime::Progress on_calibration;
  std::function<void(const evaluation::Calibration&)> on_calibrated;
  /// What a new run set up from its data before the first step (model.mean_bias_init).
  std::function<void(const std::string&)> on_info;
  /// A validation or the calibration skipped because the model in evaluation mode gives a
  /// non-finite covariance (e.g. batch norm's running statistics not settled after few steps).
  std::function<void(const std::string&)> on_warning;
  /// Data-parallel training (docs/distributed.md): every rank draws the same global batch and
  /// Monte-Carlo noise from the seed and trains on its rows; gradients are summed over the ranks.
  /// Rank 0 alone validates, calibrates and writes the job folder; the callbacks run on rank 0
  /// only. Null: one process.
  Communicator* communicator = nullptr;
};

/// Trains for config.training.num_epochs epochs. job_dir receives config.json, train_log.csv and
/// checkpoint_last.pt / checkpoint_best.pt (lowest validation GED), each written atomically after
/// every epoch. With resume, continues from checkpoint_last.pt exactly: weights, optimiser,
/// learning rate, random generators, epoch and log. Then, with config.valid.calibrate and a
/// stochastic model, fits job_dir/calibration.json for checkpoint_best.pt (train/calibrate.h).
/// Returns the log.
std::vector<EpochRecord> train(const config::Config& config, const TrainOptions& options);

}  // namespace ssn::train
