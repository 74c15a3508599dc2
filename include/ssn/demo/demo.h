#pragma once

// `ssn demo`: the main job end to end on built-in synthetic data, minutes on 2 CPU cores:
// a lidc-like data set -> a small low-rank SSN and a small deterministic U-Net -> predictions of
// the test split -> evaluation -> report.html.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "ssn/train/trainer.h"

namespace ssn::demo {

struct DemoOptions {
  std::filesystem::path out = "out/demo";
  /// Synthetic images in all (80 % train, 10 % val, 10 % test).
  int64_t cases = 1000;
  /// Training epochs of each model.
  int64_t epochs = 24;
  /// Side of the model's input in pixels (the synthetic images are 180 x 180, centre-cropped to
  /// 128 and averaged down to this).
  int64_t size = 64;
  /// Samples per test case in the evaluation.
  int64_t eval_samples = 100;
  uint64_t seed = 0;
  /// Replace an `out` that an earlier `ssn demo` wrote (it holds demo.json); any other non-empty
  /// folder is refused.
  bool overwrite = false;
  /// A line per stage ("training low-rank SSN ...").
  std::function<void(const std::string&)> on_stage;
  /// Passed to training (progress bar).
  std::function<void(const train::StepReport&)> on_step;
};

struct DemoResult {
  double ged_lowrank = 0.0, ged_deterministic = 0.0;
  double diversity_lowrank = 0.0, annotator_diversity = 0.0;
  /// The GED a perfect model of the annotators scores with the same samples (ged_oracle).
  double ged_oracle = 0.0;
  /// The low-rank model's calibrated temperature (calibration.json) and its test GED at
  /// temperature 1; ged_lowrank and diversity_lowrank are calibrated.
  double temperature = 1.0, ged_lowrank_uncalibrated = 0.0;
  double seconds = 0.0;
  std::filesystem::path report;
};

/// The two configs of the demo, in the schema of configs/ (also written into the job folders).
nlohmann::json demo_config(bool low_rank, const DemoOptions& options);

/// Runs the demo. Writes out/data, out/lowrank, out/deterministic (job folders with predictions/
/// and evaluation/), out/report.html and out/demo.json (status, GEDs, seconds per stage).
DemoResult run_demo(const DemoOptions& options);

}  // namespace ssn::demo
