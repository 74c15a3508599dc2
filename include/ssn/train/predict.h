#pragma once

// `ssn predict`: a trained model over a data split, into a predictions folder
// (predictions/predictions_folder.h).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "ssn/config/config.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/train/distributed.h"

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
  /// At most this many cases, the first of the split or CSV (0: all).
  int64_t max_cases = 0;
  /// Copy the checkpoint's calibration (calibration.json beside it, fitted for this very file)
  /// into the predictions folder, where sample, evaluate and report apply it.
  bool carry_calibration = true;
  /// Sharded prediction (docs/distributed.md): rank r of W predicts cases r, r + W, ... into a
  /// shard folder beside `out`; rank 0 then moves them into its staging folder and writes the
  /// one predictions folder, in the order one process would. Null: one process.
  Communicator* communicator = nullptr;
};

/// Writes the predictions folder for every case of the split (LIDC) or of options.test_csv
/// (volumes, with the input's geometry). A deterministic model is written as a distribution with
/// a zero factor and D = predictions::kDeterministicVariance, so that its samples are its
/// prediction. The folder appears only when complete. Returns the number of cases.
int64_t predict(const config::Config& config, const PredictOptions& options);

/// The calibration of `checkpoint`: the calibration.json in its folder when that was fitted for
/// this very model (the same size and CRC-32; the file name may differ) on predictions made with
/// the same test-time mirroring (`mirror`, config test.mirror). Otherwise nullopt, and `why_not`
/// (if given) says why ("" when there is no calibration.json).
std::optional<evaluation::Calibration> checkpoint_calibration(
    const std::filesystem::path& checkpoint, bool mirror, std::string* why_not = nullptr);

}  // namespace ssn::train
