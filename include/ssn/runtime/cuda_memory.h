#pragma once

// The CUDA caching allocator's statistics, where the LibTorch in use has CUDA (the pip wheel's);
// a CPU-only LibTorch (Debian's) builds this without them and reports them as unavailable.

#include <c10/core/Device.h>

#include <cstdint>
#include <optional>

namespace ssn::runtime {

/// True when this build can read the CUDA caching allocator's statistics.
bool cuda_memory_stats_available();

/// Bytes the caching allocator has handed out on `device` now (live tensors), if available.
std::optional<int64_t> cuda_allocated_bytes(c10::Device device);

/// The most bytes handed out on `device` at once since the last reset_cuda_peak, if available.
std::optional<int64_t> cuda_peak_allocated_bytes(c10::Device device);

/// Restarts the peak of cuda_peak_allocated_bytes from the bytes allocated now.
void reset_cuda_peak(c10::Device device);

}  // namespace ssn::runtime
