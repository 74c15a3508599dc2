#pragma once

// The sampling controls shared by sample and evaluate --predictions: --temperature,
// --class-weights and --no-calibration, resolved against the predictions folder's
// calibration.json (which applies by default; an explicit flag overrides its part).

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "flags.h"
#include "ssn/distributions/low_rank_normal.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/train/model_factory.h"

namespace ssn::cli {

/// The device of --device ("cpu", "cuda", "cuda:1"), checked: an error naming the flag otherwise.
inline at::Device device_flag(const std::string& text) {
  try {
    return train::checked_device(text);
  } catch (const c10::Error& error) {
    throw CLI::ValidationError("--device", error.what_without_backtrace());
  }
}

struct SamplingFlags {
  double temperature = 1.0;
  bool temperature_given = false;
  std::vector<double> class_weights;
  bool no_calibration = false;
};

inline void add_sampling_options(CLI::App* command, SamplingFlags& flags) {
  command
      ->add_option("--temperature", flags.temperature,
                   "Multiplies the noise; 0 gives the argmax of the mean (default: the "
                   "calibrated temperature of the folder's calibration.json, else 1)")
      ->check(non_negative_number())
      ->each([&flags](const std::string&) { flags.temperature_given = true; });
  command
      ->add_option("--class-weights", flags.class_weights,
                   "w0,w1,...: one factor per class on the noise of that class's logits "
                   "(default: the calibrated ones, else 1)")
      ->delimiter(',');
  command->add_flag("--no-calibration", flags.no_calibration,
                    "Ignore the folder's calibration.json: temperature 1, no class weights");
}

/// The controls for `predictions`: its calibration unless --no-calibration, with the explicit
/// flags overriding their part. Says on stdout what applies.
inline SamplingControls resolve_sampling(const std::filesystem::path& predictions,
                                         const SamplingFlags& flags) {
  for (double value : flags.class_weights) {
    if (!std::isfinite(value)) {
      throw CLI::ValidationError("--class-weights",
                                 "expected finite numbers, got " + std::to_string(value));
    }
  }
  SamplingControls controls;
  std::string source = "temperature 1";
  if (!flags.no_calibration) {
    if (const auto calibration = evaluation::folder_calibration(predictions)) {
      controls = calibration->controls();
      source = "calibrated: " + evaluation::describe(*calibration) + " (" +
               (predictions / evaluation::kCalibrationFile).string() + ")";
    }
  }
  if (flags.temperature_given) controls.temperature = flags.temperature;
  if (!flags.class_weights.empty()) {
    controls.class_weights = at::tensor(flags.class_weights, at::kFloat);
  }
  std::printf("sampling: %s%s\n", source.c_str(),
              flags.temperature_given || !flags.class_weights.empty()
                  ? "; overridden by --temperature / --class-weights"
                  : "");
  return controls;
}

}  // namespace ssn::cli
