#pragma once

// Calibration of a trained job on its validation split (evaluation/calibration.h): the
// checkpoint's predictions of the first valid.num_cases validation cases, the fit, and the job's
// calibration.json. Run at the end of `ssn train` and by `ssn calibrate` for existing jobs.

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ssn/config/config.h"
#include "ssn/data/lidc.h"
#include "ssn/evaluation/calibration.h"
#include "ssn/runtime/parallel_cases.h"
#include "ssn/train/training_data.h"

namespace ssn::train {

struct CalibrateOptions {
  /// The job folder; receives calibration.json.
  std::filesystem::path job_dir;
  /// Where the validation cases are: data_dir (split "val") or valid_csv.
  DataPaths data;
  /// The checkpoint to calibrate, a file of job_dir.
  std::string checkpoint = "checkpoint_best.pt";
  /// Samples per case for each setting; 0: config.valid.calibration_samples.
  int64_t num_samples = 0;
  /// The diversity band's ratio; negative: config.valid.calibration_max_diversity_ratio.
  double max_diversity_ratio = -1;
  /// Allow settings that draw whole-image samples (evaluation::CalibrationOptions::
  /// avoid_whole_image off), whatever config.valid.calibration_avoid_whole_image says.
  bool allow_whole_image = false;
  uint64_t seed = 0;
  std::string device = "cpu";
  /// The band's reference when the caller has measured it (train() does, from the splits it
  /// holds); otherwise, in the LIDC layout, calibrate_job reads the splits to measure it.
  std::optional<std::pair<double, int64_t>> band_reference;
};

/// The mean annotators' diversity (evaluation::annotator_diversity_of) over every image of
/// `splits`, and the number of images.
std::pair<double, int64_t> annotator_diversity(const std::vector<const data::LidcDataset*>& splits,
                                               int64_t num_classes);

/// Predicts the validation cases with the checkpoint into a staging folder of the job (removed
/// afterwards), fits the calibration, and writes job_dir/calibration.json atomically. The caller
/// holds the job folder's lock. Deterministic models have nothing to calibrate: an error.
evaluation::Calibration calibrate_job(const config::Config& config, const CalibrateOptions& options,
                                      const runtime::Progress& progress = {});

}  // namespace ssn::train
