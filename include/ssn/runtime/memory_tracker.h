#pragma once

#include <cstdint>

namespace ssn::runtime {

/// Counts the bytes LibTorch allocates on the CPU while it lives: installs a counting wrapper
/// around the CPU allocator on construction and restores the previous allocator on destruction.
/// LibTorch's CPU allocator does not cache, so the counts are the real working memory of tensors.
/// One tracker at a time; used by benchmarks and memory tests, never on a hot path in production.
class CpuMemoryTracker {
 public:
  CpuMemoryTracker();
  ~CpuMemoryTracker();
  CpuMemoryTracker(const CpuMemoryTracker&) = delete;
  CpuMemoryTracker& operator=(const CpuMemoryTracker&) = delete;

  /// Bytes allocated through the tracker and not yet freed.
  int64_t current_bytes() const;
  /// The largest current_bytes() since construction or the last reset_peak().
  int64_t peak_bytes() const;
  /// Restarts the peak from current_bytes().
  void reset_peak();
};

}  // namespace ssn::runtime
