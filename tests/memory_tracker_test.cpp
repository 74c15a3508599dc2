#include "ssn/runtime/memory_tracker.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace ssn::runtime {
namespace {

TEST(CpuMemoryTracker, CountsLiveTensorsAndTheirPeak) {
  CpuMemoryTracker tracker;
  const int64_t before = tracker.current_bytes();
  {
    at::Tensor a = at::empty({1000}, at::kDouble);  // 8000 bytes
    EXPECT_EQ(tracker.current_bytes() - before, 8000);
    at::Tensor b = at::empty({500}, at::kFloat);  // 2000 bytes
    EXPECT_EQ(tracker.current_bytes() - before, 10000);
  }
  EXPECT_EQ(tracker.current_bytes(), before);
  EXPECT_GE(tracker.peak_bytes() - before, 10000);
  tracker.reset_peak();
  EXPECT_EQ(tracker.peak_bytes(), tracker.current_bytes());
}

TEST(CpuMemoryTracker, TensorsOutlivingTheTrackerAreFreedSafely) {
  at::Tensor survivor;
  {
    CpuMemoryTracker tracker;
    survivor = at::ones({256});
  }
  EXPECT_EQ(survivor.sum().item<float>(), 256.0f);
  survivor.reset();  // freed through the tracked deleter after the tracker is gone
  CpuMemoryTracker again;
  EXPECT_EQ(again.current_bytes(), 0);
}

}  // namespace
}  // namespace ssn::runtime
