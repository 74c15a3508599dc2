#pragma once

// Evaluation of segmentation samples against annotations, case by case, into metrics.csv and
// summary.json (formats in docs/file-formats.md). Builds on metrics/ (the math) and io/ (files).

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ssn/distributions/low_rank_normal.h"
#include "ssn/predictions/predictions_folder.h"
#include "ssn/runtime/parallel_cases.h"

namespace ssn::evaluation {

using predictions::PredictionCase;
using predictions::PredictionMaps;

/// One case of a samples folder: DIR/<id>_s<i>.<ext> (i = 0, 1, ...) and DIR/<id>_l<j>.<ext>
/// (j = 1, 2, ...), ext one of png, nii.gz, nii, nrrd, mha.
struct SampleCase {
  std::string id;
  std::vector<std::filesystem::path> samples;
  std::vector<std::filesystem::path> annotations;
};

/// Scans a samples folder. Errors name the file or case: a folder without such files, a gap in the
/// numbering, a case without samples or without annotations.
std::vector<SampleCase> find_sample_cases(const std::filesystem::path& dir);

struct EvaluationOptions {
  /// K, background included.
  int64_t num_classes = 2;
  /// Also report Dice of the BraTS regions: whole tumour {1,2,3}, tumour core {1,3}, enhancing {3}
  /// (needs K = 4).
  bool brats_regions = false;
};

/// Metric name -> value, in the column order of metrics.csv.
using MetricRow = std::vector<std::pair<std::string, double>>;

/// The share of each map's pixels (voxels) that are foreground (any class but 0): maps
/// [N, *spatial] -> [N] float64.
at::Tensor foreground_coverage(const at::Tensor& maps);

/// Samples no annotator would draw (metric whole_image_samples): the share of `samples`
/// ([N, *spatial] labels) whose foreground covers more than half the image, in a case where no
/// annotation ([M, *spatial]) marks more than a fifth of it; NaN in the other cases.
double whole_image_share(const at::Tensor& samples, const at::Tensor& annotations);

/// The label-map part of every evaluation: ged, diversity, annotator_diversity, hm_iou, dice_<c>
/// (mean sample Dice per foreground class, NaN-skipping) and, with brats_regions, dice_wt/tc/et.
MetricRow overlap_metrics(const at::Tensor& samples, const at::Tensor& annotations,
                          const EvaluationOptions& options);

/// The per-case metrics from label maps: samples [N, *spatial], annotations [M, *spatial] ->
/// ged, diversity, annotator_diversity, hm_iou, dice_<c> (mean sample Dice per foreground class,
/// NaN-skipping), dice_wt/tc/et (with brats_regions), ncc (one-hot samples), ece (sample
/// frequencies as confidence).
MetricRow evaluate_labels(const at::Tensor& samples, const at::Tensor& annotations,
                          const EvaluationOptions& options);

struct CaseResult {
  std::string id;
  int64_t num_samples = 0;
  MetricRow metrics;
};

/// Called after each case with (cases done, cases in all).
using runtime::Progress;

/// Reads and evaluates every case of a samples folder. With num_classes = 2 any non-zero value is
/// foreground (0/255 masks); otherwise values are class indices and a value >= K is an error that
/// names the file.
std::vector<CaseResult> evaluate_sample_folder(const std::filesystem::path& dir,
                                               const EvaluationOptions& options,
                                               const Progress& progress = {});

/// The summary.json object: {"num_cases", "num_samples" (null when it differs between cases),
/// "metrics": {name: {"mean", "stderr", "count"}}} over the cases where a metric is not NaN;
/// stderr = sample standard deviation / sqrt(count), null below 2 cases.
nlohmann::json summarise(const std::vector<CaseResult>& results);

/// Logits of one chunk of samples, at most (2^25: 128 MiB in float32), so that a volume's
/// samples never exist at once.
constexpr int64_t kSampleChunkLogits = int64_t{1} << 25;

/// Calls draw(start, count) for consecutive chunks of num_samples samples of logits_per_sample
/// logits each (N = C*S), each chunk at most kSampleChunkLogits logits (one sample at least).
void for_each_sample_chunk(int64_t num_samples, int64_t logits_per_sample,
                           const std::function<void(int64_t, int64_t)>& draw);

struct SamplingOptions {
  /// Samples drawn per case.
  int64_t num_samples = 100;
  /// Case i draws from a generator seeded with seed + i, so results do not depend on threading.
  uint64_t seed = 0;
  /// Temperature and class weights applied to every sample (e.g. a calibration's).
  SamplingControls controls;
  /// Where the logits are computed (evaluate_prediction).
  at::Device device = at::kCPU;
};

/// The metrics of one predicted distribution: mean [C, *spatial], cov_diag [C, *spatial],
/// cov_factor [C*R, *spatial], annotations [M, *spatial]. Draws the samples in chunks (never all
/// logits at once) and reports overlap_metrics of their argmax, dice_mean_<c> (argmax of the mean
/// against each annotation), ncc and ece from the samples' softmax probabilities, and
/// loglikelihood: the mean over annotations of the Monte-Carlo estimate of log p(y | x). The noise
/// comes from `generator` (CPU) as LowRankNormal::rsample draws it; the logits and their
/// summaries are computed on `device`, so the metrics do not depend on it beyond float rounding.
MetricRow evaluate_prediction(const at::Tensor& mean, const at::Tensor& cov_diag,
                              const at::Tensor& cov_factor, const at::Tensor& annotations,
                              const EvaluationOptions& options, int64_t num_samples,
                              at::Generator generator, const SamplingControls& controls = {},
                              at::Device device = at::kCPU);

/// K of a predictions folder: the channel count of its first case's mean map.
int64_t classes_of_prediction_folder(const std::filesystem::path& dir);

/// Reads and evaluates every case of a predictions folder; K is the channel count of the mean
/// maps and must equal options.num_classes.
std::vector<CaseResult> evaluate_prediction_folder(const std::filesystem::path& dir,
                                                   const EvaluationOptions& options,
                                                   const SamplingOptions& sampling,
                                                   const Progress& progress = {});

/// {"temperature", "class_weights" (null or one per class)}: the controls a summary records.
nlohmann::json controls_json(const SamplingControls& controls);

/// Writes out/metrics.csv (id + one column per metric, NaN as "nan") and out/summary.json, each
/// atomically, creating `out` if missing; returns the summary. A non-null `sampling` (the
/// controls_json of the samples) is recorded in the summary as "sampling".
nlohmann::json write_evaluation(const std::filesystem::path& out,
                                const std::vector<CaseResult>& results,
                                const nlohmann::json& sampling = nullptr);

}  // namespace ssn::evaluation
