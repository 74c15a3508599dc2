#pragma once

// The reference's BraTS preprocessing (evaluation/preprocessing.py of the SSN code): labels
// 4 -> 3, a brain mask t1 > 0, and a per-channel z-score whose statistics come from the brain
// voxels strictly between the channel's 5th and 95th brain percentiles and above the channel's mean
// over the whole volume.

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

namespace ssn::data {

/// channel [*spatial] float, brain [*spatial] bool -> (channel - m) / s over the whole volume,
/// m and s (population deviation) of the voxels described above; percentiles interpolate
/// linearly between order statistics (NumPy's default). Throws when no voxel qualifies.
at::Tensor z_score_normalise(const at::Tensor& channel, const at::Tensor& brain);

struct PreprocessOptions {
  /// Fractions of cases for train / valid / test, drawn with `seed` (the reference ships fixed
  /// id lists; pass your own CSVs to use those).
  std::vector<double> fractions = {0.6, 0.1, 0.3};
  uint64_t seed = 0;
};

struct PreprocessCounts {
  int64_t train = 0, valid = 0, test = 0;
};

/// Finds every case folder with <case>_{flair,t1,t1ce,t2,seg}.nii.gz under input_dir (for BraTS
/// 2017: HGG/<case>/ and LGG/<case>/), writes the preprocessed volumes to output_dir with the same
/// relative paths (seg with 4 -> 3, brain mask as <case>_brain_mask.nii.gz, z-scored channels as
/// float32), keeping every input's geometry, and data_index_{train,valid,test}.csv with columns
/// id,flair,t1,t1ce,t2,seg,sampling_mask (paths relative to output_dir). Staged and renamed:
/// output_dir must not exist or be empty. Errors name the file.
PreprocessCounts preprocess_brats(const std::filesystem::path& input_dir,
                                  const std::filesystem::path& output_dir,
                                  const PreprocessOptions& options);

}  // namespace ssn::data
