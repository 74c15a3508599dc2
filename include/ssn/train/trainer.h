#pragma once

// Training and inference of segmentation models: 2-D images in the LIDC crops layout, or patches
// of volumes from the reference's CSV index (whole volumes at inference, see inference.h).

#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/nn/segmentation_model.h"

namespace ssn::train {

/// The model a config describes, with the config's initialisation recipe applied.
nn::SegmentationModel build_model(const config::ModelConfig& config);

struct StepReport {
  int64_t epoch = 0, step = 0, steps = 0;
  double loss = 0.0, images_per_second = 0.0, seconds_left = 0.0;
};

struct TrainOptions {
  /// The LIDC crops layout (2-D configs) ...
  std::filesystem::path data_dir;
  /// ... or the reference's CSV index files (configs whose data section names channels).
  std::filesystem::path train_csv, valid_csv;
  std::filesystem::path job_dir;
  uint64_t seed = 0;
  bool resume = false;
  std::string device = "cpu";
  /// Called after every step (progress bar); and once per skipped non-finite step with loss NaN.
  std::function<void(const StepReport&)> on_step;
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0.0;
  double val_loss = 0.0;
  double val_ged = 0.0;
  double lr = 0.0;
  int64_t bad_steps = 0;
  double seconds = 0.0;
};

/// Trains for config.training.num_epochs epochs. job_dir receives config.json, train_log.csv and
/// checkpoint_last.pt / checkpoint_best.pt (lowest validation GED), each written atomically after
/// every epoch. With resume, continues from checkpoint_last.pt exactly: weights, optimiser,
/// learning rate, random generator, epoch and log. Returns the log.
std::vector<EpochRecord> train(const config::Config& config, const TrainOptions& options);

/// Parses the text of a train_log.csv; errors name `source` and the line.
std::vector<EpochRecord> parse_train_log(const std::string& csv, const std::string& source);

struct PredictOptions {
  std::filesystem::path data_dir;
  /// CSV-indexed volumes: predicted whole, tile by tile (see inference.h).
  std::filesystem::path test_csv;
  std::string split = "test";
  std::filesystem::path checkpoint;
  std::filesystem::path out;
  std::string device = "cpu";
};

/// Writes the predictions folder of docs/file-formats.md for every case of the split (LIDC) or of
/// options.test_csv (volumes): the mean, cov_diag and cov_factor maps (NIfTI float32), the argmax
/// of the mean, a picture of the input and the annotations (PNG in 2-D; NIfTI with the input's
/// geometry in 3-D), and prediction.csv. A deterministic model is written as a distribution with
/// a zero factor and D = 1e-12, so that its samples are its prediction. The folder appears only
/// when complete. Returns the number of cases.
int64_t predict(const config::Config& config, const PredictOptions& options);

}  // namespace ssn::train
