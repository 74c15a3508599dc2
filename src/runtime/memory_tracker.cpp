#include "ssn/runtime/memory_tracker.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

// LibTorch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define SSN_ALLOCATOR_API_2_3 1
#endif

namespace ssn::runtime {
namespace {

// The allocations are keyed by their data pointer, which also serves as the DataPtr's context, so
// the wrapper keeps the "raw" allocator interface that parts of LibTorch rely on.
struct TrackingState {
  std::mutex mutex;
  std::unordered_map<void*, size_t> sizes;
  int64_t current = 0;
  int64_t peak = 0;
  c10::Allocator* base = nullptr;
  bool active = false;
};

TrackingState& state() {
  static TrackingState instance;
  return instance;
}

void tracked_delete(void* data) {
  TrackingState& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    const auto found = s.sizes.find(data);
    if (found != s.sizes.end()) {
      s.current -= static_cast<int64_t>(found->second);
      s.sizes.erase(found);
    }
  }
  s.base->raw_deleter()(data);
}

class TrackingAllocator final : public c10::Allocator {
 public:
#ifdef SSN_ALLOCATOR_API_2_3
  c10::DataPtr allocate(size_t bytes) override { return allocate_tracked(bytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t bytes) const override { return allocate_tracked(bytes); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &tracked_delete; }

 private:
  static c10::DataPtr allocate_tracked(size_t bytes) {
    TrackingState& s = state();
    c10::DataPtr inner = s.base->allocate(bytes);
    void* data = inner.get();
    inner.release_context();  // ownership moves to the tracked DataPtr below
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.sizes[data] = bytes;
      s.current += static_cast<int64_t>(bytes);
      s.peak = std::max(s.peak, s.current);
    }
    return {data, data, &tracked_delete, c10::Device(c10::DeviceType::CPU)};
  }
};

TrackingAllocator& tracking_allocator() {
  static TrackingAllocator instance;
  return instance;
}

// Higher than any priority LibTorch registers with, so both swaps take effect.
constexpr uint8_t kPriority = 250;

}  // namespace

CpuMemoryTracker::CpuMemoryTracker() {
  TrackingState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  TORCH_CHECK(!s.active, "CpuMemoryTracker: only one tracker may be active at a time");
  c10::Allocator* base = c10::GetCPUAllocator();
  TORCH_CHECK(base->raw_deleter() != nullptr,
              "CpuMemoryTracker: the CPU allocator does not support raw deletion");
  s.base = base;
  s.current = 0;
  s.peak = 0;
  s.active = true;
  c10::SetCPUAllocator(&tracking_allocator(), kPriority);
}

CpuMemoryTracker::~CpuMemoryTracker() {
  TrackingState& s = state();
  c10::SetCPUAllocator(s.base, kPriority);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.active = false;  // tensors still alive keep the tracked deleter, which stays valid
}

int64_t CpuMemoryTracker::current_bytes() const {
  TrackingState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.current;
}

int64_t CpuMemoryTracker::peak_bytes() const {
  TrackingState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.peak;
}

void CpuMemoryTracker::reset_peak() {
  TrackingState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.peak = s.current;
}

}  // namespace ssn::runtime
