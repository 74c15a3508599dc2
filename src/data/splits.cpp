#include "ssn/data/splits.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace ssn::data {

void check_fractions(const std::vector<double>& fractions) {
  const bool valid =
      fractions.size() == 3 &&
      std::all_of(fractions.begin(), fractions.end(), [](double f) { return f >= 0; }) &&
      std::abs(fractions[0] + fractions[1] + fractions[2] - 1.0) < 1e-6;
  TORCH_CHECK(valid, "split fractions: expected three non-negative numbers adding up to 1");
}

Split split_cases(int64_t cases, const std::vector<double>& fractions, uint64_t seed) {
  check_fractions(fractions);
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const at::Tensor order = at::randperm(cases, generator, at::kLong);
  const auto n = static_cast<double>(cases);
  const int64_t train = std::min(cases, static_cast<int64_t>(std::round(fractions[0] * n)));
  const int64_t valid = std::min(cases - train, static_cast<int64_t>(std::round(fractions[1] * n)));
  Split split;
  for (int64_t i = 0; i < cases; ++i) {
    const size_t part = i < train ? 0 : (i < train + valid ? 1 : 2);
    split.parts[part].push_back(order[i].item<int64_t>());
  }
  return split;
}

}  // namespace ssn::data
