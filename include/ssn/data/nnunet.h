#pragma once

// The nnU-Net raw layout (dataset.json, imagesTr/, labelsTr/, imagesTs/) as the CSV indexes that
// ssn train and ssn predict read.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ssn::data {

struct NnUnetIndexOptions {
  /// Fractions of imagesTr/labelsTr cases for train / valid / test, drawn with `seed`.
  std::vector<double> fractions = {0.8, 0.2, 0.0};
  uint64_t seed = 0;
};

struct NnUnetIndex {
  std::vector<std::string> channels;  ///< column names, from dataset.json's channel_names
  int64_t num_classes = 0;            ///< from dataset.json's labels
  int64_t train = 0, valid = 0, test = 0, unlabelled = 0;
  /// Cases of imagesTr without a label in labelsTr (indexed in unlabelled.csv, counted there too).
  int64_t training_images_without_labels = 0;
  /// Channels normalised as CT (dataset.json names them "CT"), from the training foreground.
  std::vector<std::string> ct_channels;
};

/// Indexes a dataset in the nnU-Net raw layout (dataset.json with channel_names, labels and
/// file_ending; imagesTr/<case>_<XXXX><ending>, labelsTr/<case><ending>, optionally imagesTs/)
/// as CSV files in `out`: train.csv, valid.csv, test.csv (labelled cases, split by `fractions`)
/// and unlabelled.csv without a target column, for predict: the cases of imagesTs/ and the cases
/// of imagesTr/ that have no label (counted in training_images_without_labels, never dropped
/// silently). Columns: id, one per channel (named as dataset.json, lower-cased, spaces as '_'),
/// seg; absolute paths, so no image is copied. Also normalisation.json (data/volumes.h), which
/// load_volume applies as nnU-Net normalises: a "CT" channel clipped to the 0.5 .. 99.5
/// percentiles of the training split's foreground and z-scored with its mean and deviation
/// (10,000 foreground voxels drawn with replacement from each training case with `seed`, as
/// nnU-Net v2 samples);
/// every other channel z-scored per image over its non-zero voxels. Errors name the file: a missing
/// or malformed dataset.json, a case without one of its channel files. `out` must not exist or be
/// empty.
NnUnetIndex index_nnunet_raw(const std::filesystem::path& dataset, const std::filesystem::path& out,
                             const NnUnetIndexOptions& options);

}  // namespace ssn::data
