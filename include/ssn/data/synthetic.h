#pragma once

// Synthetic data sets in the layouts of the real ones, so that the real readers are what the demo
// and the tests exercise.

#include <cstdint>
#include <filesystem>
#include <vector>

namespace ssn::data {

struct LidcLikeOptions {
  /// Images in all (80 % train, 10 % val, 10 % test, by patient).
  int64_t cases = 1000;
  uint64_t seed = 0;
  /// Image side in pixels (the LIDC crops are 180).
  int64_t side = 180;
};

/// Writes <out>/{train,val,test}/images/<patient>/<slice>.png and
/// .../gt/<patient>/<slice>_l1..4.png: a lesion-like blob with a soft, irregular boundary in a
/// textured background. Each annotator thresholds the soft lesion profile at their own level (so
/// boundaries disagree coherently), and faint lesions fall below some annotators' detection level
/// and stay unmarked. Everything is written to a staging folder that is renamed to `out` at the
/// end; `out` must not exist or be empty. Returns the number of cases per split written.
struct SplitCounts {
  int64_t train = 0, val = 0, test = 0;
};
SplitCounts write_lidc_like(const std::filesystem::path& out, const LidcLikeOptions& options);

}  // namespace ssn::data

namespace ssn::data {

struct BratsLikeOptions {
  /// Cases in all (60 % train, 20 % valid, 20 % test).
  int64_t cases = 30;
  uint64_t seed = 0;
  /// Volume size in voxels, [D, H, W] (tensor order; ITK's z, y, x).
  std::vector<int64_t> shape = {48, 64, 56};
};

/// Writes <out>/<case>/<case>_{flair,t1,t1ce,t2}.nii.gz (float32, z-scored inside the brain, 0
/// outside), <case>_seg.nii.gz (0 background, 1 necrotic / non-enhancing core, 2 oedema,
/// 3 enhancing tumour: nested, irregular regions) and <case>_mask.nii.gz (the brain), all with
/// the same non-trivial geometry (anisotropic spacing, an origin away from 0 and a flipped
/// direction), plus train.csv, valid.csv and test.csv with the columns
/// id,flair,t1,t1ce,t2,seg,sampling_mask (paths relative to `out`). Staged and renamed like
/// write_lidc_like. Returns the cases per split.
SplitCounts write_brats_like(const std::filesystem::path& out, const BratsLikeOptions& options);

}  // namespace ssn::data
