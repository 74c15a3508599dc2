#pragma once

// A caching CPU allocator for LibTorch. The default one hands every large tensor back to the
// operating system when it is freed (glibc returns chunks above its mmap threshold, and trims the
// top of its heap), so each training step faults in and zeroes its whole working set again: 19 %
// of a PHiSeg-size training step on 2 cores was kernel time in page faults. Blocks of at least
// `min_bytes` are kept when freed and reused for a later request of the same rounded size, which a
// training or inference loop makes every step. Idle blocks beyond `idle_limit_bytes` are freed,
// largest first, whenever a request cannot be served from the cache (a change of phase, such as
// validation after training), so memory held idle stays bounded.
//
// Installed once per process by the command-line tool; the library never installs it itself.
// CpuMemoryTracker stacks on top of it (it counts tensor bytes, not cached ones).

#include <cstddef>
#include <cstdint>

namespace ssn::runtime {

struct CpuCacheStats {
  int64_t hits = 0, misses = 0;
  int64_t idle_bytes = 0;    ///< cached blocks not in use
  int64_t in_use_bytes = 0;  ///< blocks of the cache in use by tensors
};

/// Installs the cache as LibTorch's CPU allocator for the rest of the process (once; a second
/// call changes nothing). Thread-safe.
void install_cpu_cache(size_t min_bytes = size_t{1} << 20,
                       size_t idle_limit_bytes = size_t{1} << 30);

/// Whether install_cpu_cache has run.
bool cpu_cache_installed();

CpuCacheStats cpu_cache_stats();

/// Frees every idle block (e.g. before measuring the process's resident memory).
void release_cpu_cache();

}  // namespace ssn::runtime
