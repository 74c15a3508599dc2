#include "ssn/runtime/threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <thread>

namespace ssn::runtime {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

int configure_threads(int requested) {
  const int threads = requested > 0 ? requested : available_cores();
  at::set_num_threads(threads);
  return threads;
}

}  // namespace ssn::runtime
