#pragma once

// Post-hoc calibration of a predicted distribution on the validation split: the sampling
// temperature (and, where it pays, per-class weights on the noise) that minimise the validation
// GED. Stored as calibration.json in a job folder and carried into predictions folders, where
// sample, evaluate and report apply it (format in docs/file-formats.md).

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/runtime/parallel_cases.h"

namespace ssn::evaluation {

/// The file name of a calibration, in a job folder and in a predictions folder.
inline constexpr const char* kCalibrationFile = "calibration.json";

/// Validation figures of one setting: means over the cases.
struct CalibrationScore {
  double ged = 0.0;
  double diversity = 0.0;
  /// The share of all samples that are whole-image samples (evaluation::whole_image_share: more
  /// than half the image foreground in a case where no annotation marks more than a fifth).
  double whole_image = 0.0;
};

struct Calibration {
  double temperature = 1.0;
  /// [C] float, or undefined when per-class weights did not pay (all 1).
  at::Tensor class_weights;
  /// Before (temperature 1, no class weights), with the temperature only, and after.
  CalibrationScore before, temperature_only, after;
  /// The coarse grid's temperature of the lowest validation GED, whatever its diversity and
  /// whole-image samples, and its figures: what the band and the whole-image preference cost
  /// (absent in files written before the field).
  std::optional<double> lowest_ged_temperature;
  CalibrationScore lowest_ged;
  /// The annotators' diversity of the validation cases it was fitted on.
  double annotator_diversity = 0.0;
  /// The band's reference where it was not annotator_diversity: the annotators' diversity over
  /// more annotated images (CalibrationOptions::band_reference), and how many.
  std::optional<double> band_annotator_diversity;
  int64_t band_annotator_cases = 0;
  /// The diversity band the fit kept to (CalibrationOptions::max_diversity_ratio; 0: none).
  double max_diversity_ratio = 0.0;
  /// Whether it preferred settings without whole-image samples (CalibrationOptions::
  /// avoid_whole_image, where it applied; false in files before the field).
  bool avoid_whole_image = false;
  /// Whether the predictions it was fitted on were mirrored (config test.mirror; false in files
  /// before the field): `ssn predict` carries it only into predictions made the same way.
  bool mirror = false;
  /// How it was fitted.
  int64_t num_cases = 0;
  int64_t num_samples = 0;
  uint64_t seed = 0;
  /// The checkpoint it was fitted for: its file name, size and CRC-32 (empty when unknown).
  std::string checkpoint_name;
  uint64_t checkpoint_size = 0;
  uint32_t checkpoint_crc = 0;

  /// The annotators' diversity the band is relative to.
  double band_reference() const { return band_annotator_diversity.value_or(annotator_diversity); }
  /// `base` with this calibration's temperature and class weights.
  SamplingControls controls() const;
};

struct CalibrationOptions {
  /// Samples per case for each setting's GED (the same noise for every setting).
  int64_t num_samples = 100;
  uint64_t seed = 0;
  /// At most this many cases of the folder (0: all).
  int64_t max_cases = 0;
  /// Only settings whose validation diversity lies within [1/r, r] times the annotators' are
  /// candidates (r >= 1; 0: any setting). GED alone rewards spread: its optimum can sample
  /// segmentations that disagree more than the annotators do. When no setting lies in the band,
  /// the one nearest to it (in log ratio) is taken.
  double max_diversity_ratio = 1.25;
  /// The annotators' diversity the band is relative to, and over how many images, where it is
  /// measured on more images than the folder's cases (absent: the cases' own mean). Four
  /// annotations of 100 validation cases estimate it with a standard error of 2-5 %: enough to move
  /// the band's edge by as much (annotator_diversity_of).
  std::optional<std::pair<double, int64_t>> band_reference;
  /// A setting that draws no whole-image sample on the validation cases is preferred to every one
  /// that draws some (before the band and the GED): samples that paint the whole image where no
  /// annotator marks more than a fifth of it are what makes a user stop trusting the model. Not
  /// applied where some annotation of the cases covers more than half its image (such samples are
  /// then the annotators' own).
  bool avoid_whole_image = true;
};

/// Fits the calibration on a predictions folder whose cases carry annotations: the temperature on
/// a grid of 0.2 .. 3 (step 0.2), refined to steps of 0.05 around the best (the lowest mean GED
/// among the settings within the diversity band, among those without whole-image samples where
/// there are such; see CalibrationOptions); then, for each
/// foreground class in turn, a weight in 0.6 .. 1.4 (step 0.2) on that class's noise, kept only
/// when it lowers the validation GED by more than twice the standard error of the per-case
/// differences (otherwise noise would be fitted). Every setting sees the same noise (case i draws
/// from seed + i), so settings compare without sampling noise between them.
Calibration fit_calibration(const std::filesystem::path& predictions,
                            const CalibrationOptions& options,
                            const runtime::Progress& progress = {});

/// The annotators' diversity of one image's annotations ([M, *spatial] labels < num_classes): the
/// mean IoU distance over all M x M ordered pairs, self-pairs included, as evaluate's
/// annotator_diversity.
double annotator_diversity_of(const at::Tensor& annotations, int64_t num_classes);

/// Writes `calibration` as JSON to `path`, atomically.
void write_calibration(const std::filesystem::path& path, const Calibration& calibration);

/// Reads a calibration file; errors name the file and the field.
Calibration read_calibration(const std::filesystem::path& path);

/// The calibration of a predictions folder (its calibration.json), if it has one.
std::optional<Calibration> folder_calibration(const std::filesystem::path& predictions);

/// Size and CRC-32 of a file, read whole (for a checkpoint's identity).
std::pair<uint64_t, uint32_t> file_identity(const std::filesystem::path& path);

/// One line for logs: "temperature 0.75, class weights [1, 1.2]; validation GED 0.21 -> 0.18".
std::string describe(const Calibration& calibration);

}  // namespace ssn::evaluation
