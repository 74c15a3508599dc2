#pragma once

// The per-case loop of every command that processes a folder of cases (evaluate, sample): cases
// are independent, so they run in parallel across LibTorch's intra-op threads (whose own parallel
// loops then run inline), with a progress callback after each.

#include <cstdint>
#include <functional>

namespace ssn::runtime {

/// Called after each case with (cases done, cases in all), never concurrently.
using Progress = std::function<void(int64_t, int64_t)>;

/// Runs body(i) for every i in [0, cases), in parallel (at::parallel_for, one case per task),
/// then progress. An exception in any case is rethrown once the loop stops.
void for_each_case(int64_t cases, const std::function<void(int64_t)>& body,
                   const Progress& progress = {});

}  // namespace ssn::runtime
