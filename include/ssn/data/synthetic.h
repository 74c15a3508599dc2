#pragma once

// Synthetic data sets in the layouts of the real ones, so that the real readers are what the demo
// and the tests exercise.

#include <cstdint>
#include <filesystem>

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
