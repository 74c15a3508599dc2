#pragma once

// JSON config (the reference's schema: sections model / data / training / valid / loss / optimizer
// / scheduler, each named object holding its options) -> Options structs, validated in one place.
// Unknown keys and wrong types are errors that name the key and its path.

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ssn/nn/segmentation_model.h"
#include "ssn/nn/unet.h"

namespace ssn::config {

struct ModelConfig {
  /// "UNet" (deterministic) or "StochasticUNet" (rank 0 = diagonal).
  std::string name = "StochasticUNet";
  nn::ModelKind kind = nn::ModelKind::kLowRank;
  int64_t input_channels = 1;
  int64_t num_classes = 2;
  int64_t rank = 10;
  double epsilon = 1e-5;
  std::vector<int64_t> filters = {32, 64, 128, 192, 192, 192, 192};
  int64_t convs_per_level = 3;
  nn::Normalisation normalisation = nn::Normalisation::kBatch;
  /// Initial bias of the log-diagonal conv: log D starts near this value (the CPU recipe).
  double log_diag_bias = 0.0;
  /// Multiplies the default initial weights of the covariance-factor conv.
  double factor_init_scale = 1.0;
};

struct DataConfig {
  std::string dataset = "lidc";  ///< the LIDC crops layout
  int64_t crop = 128;
  int64_t size = 128;
  int64_t annotators = 4;
};

struct TrainingConfig {
  int64_t batch_size = 12;
  int64_t num_epochs = 100;
  /// Epochs at the start during which only the mean is trained (covariance frozen).
  int64_t mean_only_epochs = 0;
  bool augment = true;
  /// Training stops after this many steps whose loss was NaN or infinite (each is skipped).
  int64_t max_bad_steps = 20;
};

struct ValidConfig {
  int64_t eval_every = 1;    ///< epochs
  int64_t num_cases = 20;    ///< validation cases scored per evaluation
  int64_t num_samples = 16;  ///< samples per case for the validation GED
};

struct LossConfig {
  std::string name = "StochasticSegmentationNetworkLossMCIntegral";  ///< or "CrossEntropyLoss"
  int64_t num_mc_samples = 20;
};

struct OptimizerConfig {
  std::string name = "Adam";  ///< Adam | RMSprop | SGD
  double lr = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;  ///< SGD, RMSprop
};

struct SchedulerConfig {
  std::vector<int64_t> milestones;  ///< MultiStepLR: epochs at which lr *= gamma
  double gamma = 0.1;
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainingConfig training;
  ValidConfig valid;
  LossConfig loss;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  nlohmann::json source;  ///< the file as read, copied into job folders
};

/// Parses and validates; `origin` names the file in error messages.
Config parse_config(const nlohmann::json& json, const std::string& origin = "config");

/// Reads a JSON file and parses it.
Config load_config(const std::filesystem::path& path);

}  // namespace ssn::config
