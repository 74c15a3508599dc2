#include "ssn/runtime/parallel_cases.h"

#include <ATen/Parallel.h>

#include <mutex>

namespace ssn::runtime {

void for_each_case(int64_t cases, const std::function<void(int64_t)>& body,
                   const Progress& progress) {
  std::mutex progress_mutex;
  int64_t done = 0;
  at::parallel_for(0, cases, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      body(i);
      std::lock_guard<std::mutex> lock(progress_mutex);
      ++done;
      if (progress) progress(done, cases);
    }
  });
}

}  // namespace ssn::runtime
