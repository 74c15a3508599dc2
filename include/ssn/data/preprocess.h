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
  /// Fractions of cases for train / valid / test, drawn with `seed` (the default: any data).
  std::vector<double> fractions = {0.6, 0.1, 0.3};
  uint64_t seed = 0;
  /// Instead, the SSN paper's fixed BraTS 2017 lists (brats2017_paper_split): only their cases
  /// are processed, in their order; input cases not listed are left out (counted).
  bool paper_split = false;
};

struct PreprocessCounts {
  int64_t train = 0, valid = 0, test = 0;
  /// Cases of the input folder in none of the paper's lists (paper_split only).
  int64_t left_out = 0;
};

/// The SSN paper's BraTS 2017 case ids, part 0 (train, 171), 1 (valid, 28) or 2 (test, 86), as
/// the reference's evaluation/preprocessing.py lists them: "<HGG|LGG>/<case>/<case>".
const std::vector<std::string>& brats2017_paper_split(size_t part);

/// Finds every case folder with <case>_{flair,t1,t1ce,t2,seg}.nii.gz under input_dir (for BraTS
/// 2017: HGG/<case>/ and LGG/<case>/), writes the preprocessed volumes to output_dir with the same
/// relative paths (seg with 4 -> 3, brain mask as <case>_brain_mask.nii.gz, z-scored channels as
/// float32), keeping every input's geometry, and data_index_{train,valid,test}.csv with columns
/// id,flair,t1,t1ce,t2,seg,sampling_mask (paths relative to output_dir). Staged and renamed:
/// output_dir must not exist or be empty. Errors name the file; with paper_split, one error lists
/// every id of the paper's lists the input folder lacks.
PreprocessCounts preprocess_brats(const std::filesystem::path& input_dir,
                                  const std::filesystem::path& output_dir,
                                  const PreprocessOptions& options);

}  // namespace ssn::data
