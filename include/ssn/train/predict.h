#pragma once

// `ssn predict`: a trained model over a data split, into a predictions folder
// (predictions/predictions_folder.h).

#include <cstdint>
#include <filesystem>
#include <string>

#include "ssn/config/config.h"

namespace ssn::train {

struct PredictOptions {
  /// The LIDC crops layout (2-D configs) and its split ...
  std::filesystem::path data_dir;
  std::string split = "test";
  /// ... or CSV-indexed volumes, predicted whole, tile by tile (see inference.h).
  std::filesystem::path test_csv;
  /// A checkpoint of a model built from the same config.
  std::filesystem::path checkpoint;
  /// The predictions folder; must not exist or be empty.
  std::filesystem::path out;
  std::string device = "cpu";
};

/// Writes the predictions folder for every case of the split (LIDC) or of options.test_csv
/// (volumes, with the input's geometry). A deterministic model is written as a distribution with
/// a zero factor and D = predictions::kDeterministicVariance, so that its samples are its
/// prediction. The folder appears only when complete. Returns the number of cases.
int64_t predict(const config::Config& config, const PredictOptions& options);

}  // namespace ssn::train
