#pragma once

namespace ssn::runtime {

/// The number of CPU cores this process may run on (its affinity mask, which respects taskset and
/// container CPU sets), at least 1.
int available_cores();

/// Sets LibTorch's intra-op thread count: `requested` if > 0, else available_cores(). Debian's
/// LibTorch starts with a single thread, so every entry point calls this once. Returns the count
/// set.
int configure_threads(int requested = 0);

}  // namespace ssn::runtime
