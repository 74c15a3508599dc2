#include "ssn/runtime/cuda_memory.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#ifdef SSN_CUDA_MEMORY_STATS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ssn::runtime {

#ifdef SSN_CUDA_MEMORY_STATS
namespace {
// Index 0 of each statistic array is the aggregate over the small and large pools (StatType
// AGGREGATE in every LibTorch version; the enum's namespace moved between versions).
constexpr size_t kAggregate = 0;

// The device's index, with its caching allocator set up (the allocator refuses statistics of a
// device it has not allocated on yet: "Invalid device argument").
c10::DeviceIndex index_of(c10::Device device) {
  TORCH_CHECK(device.is_cuda(), "CUDA memory statistics: ", device.str(), " is not a CUDA device");
  const c10::DeviceIndex index = device.has_index() ? device.index() : 0;
  (void)at::empty({1}, at::TensorOptions(c10::Device(c10::DeviceType::CUDA, index)));
  return index;
}
}  // namespace

bool cuda_memory_stats_available() { return true; }

std::optional<int64_t> cuda_allocated_bytes(c10::Device device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
  return stats.allocated_bytes[kAggregate].current;
}

std::optional<int64_t> cuda_peak_allocated_bytes(c10::Device device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_of(device));
  return stats.allocated_bytes[kAggregate].peak;
}

void reset_cuda_peak(c10::Device device) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(index_of(device));
}
#else
bool cuda_memory_stats_available() { return false; }
std::optional<int64_t> cuda_allocated_bytes(c10::Device) { return std::nullopt; }
std::optional<int64_t> cuda_peak_allocated_bytes(c10::Device) { return std::nullopt; }
void reset_cuda_peak(c10::Device) {}
#endif

}  // namespace ssn::runtime
