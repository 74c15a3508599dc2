#pragma once

// The predictions folder (docs/file-formats.md) has one owner: this file. `ssn predict` writes it
// through PredictionsWriter; evaluate, sample and report read it through read_prediction_csv,
// read_prediction_maps and read_annotations. A folder holds prediction.csv (id, image,
// prediction, logit_mean, cov_diag, cov_factor, annotations) and, per case, the maps of the
// predicted Gaussian (NIfTI float32), the argmax of the mean, a picture of the input and the
// annotations (PNG for 2-D cases; NIfTI with the input's geometry for 3-D cases).
// Shapes: C classes, R rank, M annotations, *spatial = H, W or D, H, W.

#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ssn/io/image.h"

namespace ssn::predictions {

/// The diagonal variance a deterministic model is written with (its factor is zero), so that
/// every sample of it is its argmax: a distribution like every other, with no special case in
/// the readers.
constexpr double kDeterministicVariance = 1e-12;

/// One case of a predictions folder: the maps of the predicted Gaussian and the annotations,
/// paths resolved against the folder.
struct PredictionCase {
  std::string id;
  std::filesystem::path logit_mean;  ///< [C, *spatial]
  std::filesystem::path cov_diag;    ///< [C, *spatial]
  std::filesystem::path cov_factor;  ///< [C*R, *spatial], rank-major
  std::vector<std::filesystem::path> annotations;
  /// The optional `image` column (a picture of the input for reports); empty when absent.
  std::filesystem::path image;
  /// A folder of the reference's: the case's ROI (column `sampling_mask`); empty otherwise.
  std::filesystem::path sampling_mask;
};

/// The maps of one prediction case, float32 as stored.
struct PredictionMaps {
  at::Tensor mean;        ///< [C, *spatial]
  at::Tensor cov_diag;    ///< [C, *spatial]
  at::Tensor cov_factor;  ///< [C*R, *spatial]
};

/// The class-0 logit the reference's evaluation sets outside a case's ROI (every sample is
/// background there).
constexpr double kReferenceBackgroundLogit = 100.0;

/// Reads dir/prediction.csv: columns id, logit_mean, cov_diag, cov_factor, annotations (paths
/// separated by ';'), optional image, other columns ignored. Errors name the file, line and column.
/// With require_annotations false, cases without annotations are allowed (sampling unlabelled
/// predictions). Also reads the folder the reference's inference.py writes: its prediction.csv
/// has no `annotations` column but the test CSV's `seg` (the annotation) and `sampling_mask`
/// columns, and its maps are vector NIfTI images (channels per voxel) at paths relative to the
/// folder inference.py ran in (found by file name in `dir`).
std::vector<PredictionCase> read_prediction_csv(const std::filesystem::path& dir,
                                                bool require_annotations = true);

/// Reads the three maps of a case and checks that their shapes agree; errors name the file. With
/// a sampling_mask (the reference's folders), applies it as the reference's evaluation does:
/// outside the ROI the class-0 logit is kReferenceBackgroundLogit and the factor is zero.
PredictionMaps read_prediction_maps(const PredictionCase& prediction);

/// Reads label maps -> [number of files, *spatial] uint8 class indices. With num_classes = 2 any
/// non-zero value is 1 (0/255 masks); otherwise a value >= num_classes is an error naming the
/// file. With `spatial` not empty every map must have that shape (`shape_source` names where the
/// expected shape comes from in that error).
at::Tensor read_label_maps(const std::vector<std::filesystem::path>& files, int64_t num_classes,
                           at::IntArrayRef spatial = {},
                           const std::filesystem::path& shape_source = {});

/// For volumes: checks that every file of `files` has the geometry (spacing, origin, direction) of
/// `reference`'s first `axes` axes; an error names the file, the case and both geometries. Label
/// maps of another geometry would be scored voxel for voxel against the wrong anatomy.
void check_same_geometry(const std::vector<std::filesystem::path>& files,
                         const std::filesystem::path& reference, size_t axes,
                         const std::string& case_id);

/// Reads the annotations of a case as labels [M, *spatial] (read_label_maps against the shape of
/// the case's maps; for volumes, also against their geometry).
at::Tensor read_annotations(const PredictionCase& prediction, int64_t num_classes,
                            at::IntArrayRef spatial);

/// What is written for one case.
struct CasePrediction {
  /// Any string; '/' becomes '_' in file names, and ids that collide after that are an error.
  std::string id;
  at::Tensor mean;         ///< [C, *spatial]
  at::Tensor cov_diag;     ///< [C, *spatial]; undefined for a deterministic model
  at::Tensor cov_factor;   ///< [C*R, *spatial]; undefined or no channels for R = 0
  at::Tensor image;        ///< [*spatial] the input (its first channel) for pictures
  at::Tensor annotations;  ///< [M, *spatial] class indices; undefined when the case has none
  /// The input's geometry (3-D cases; empty for 2-D ones).
  io::Geometry geometry;
};

/// Writes the cases of a predictions folder into a staging folder; prediction.csv last.
class PredictionsWriter {
 public:
  explicit PredictionsWriter(std::filesystem::path folder);
  /// Writes the maps, the argmax of the mean, the picture and the annotations of one case.
  void write_case(const CasePrediction& prediction);
  /// Writes prediction.csv for the cases written so far.
  void finish();
  /// Data-parallel prediction: moves the files of `shards` (folders that other writers wrote and
  /// finished) into this folder and interleaves their rows with this writer's, case i of the
  /// whole list having been written by writer i % W as its (i / W)-th case, this writer being
  /// number 0 and shards[s - 1] number s. A file name that exists already is an error.
  void merge_shards(const std::vector<std::filesystem::path>& shards);
  /// Cases written so far.
  size_t rows_count() const { return rows_.size(); }
  /// The (staging) folder being written.
  const std::filesystem::path& folder() const { return folder_; }

 private:
  std::filesystem::path folder_;
  std::vector<std::string> rows_;
  std::vector<std::string> stems_;
};

/// Builds the predictions folder `out` atomically: `write` fills a writer on a staging folder
/// that becomes `out` (which must not exist or be empty; `what` names it in errors) only when
/// every case and prediction.csv are written. Returns the number of cases.
int64_t write_predictions_folder(const std::filesystem::path& out, const std::string& what,
                                 const std::function<void(PredictionsWriter&)>& write);

}  // namespace ssn::predictions
