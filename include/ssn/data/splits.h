#pragma once

// Seeded train / valid / test splits of a list of cases, one way for every command that makes
// them (preprocess-brats, index-nnunet).

#include <array>
#include <cstdint>
#include <vector>

namespace ssn::data {

struct Split {
  /// Indices into the cases for train, valid and test, in the order of the seeded permutation.
  std::array<std::vector<int64_t>, 3> parts;
};

/// Checks that `fractions` are three non-negative numbers adding up to 1.
void check_fractions(const std::vector<double>& fractions);

/// A seeded permutation of `cases` indices: the first round(fractions[0] * cases) go to train, the
/// next round(fractions[1] * cases) to valid, the rest to test.
Split split_cases(int64_t cases, const std::vector<double>& fractions, uint64_t seed);

}  // namespace ssn::data
