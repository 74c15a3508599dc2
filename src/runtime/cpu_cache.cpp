#include "ssn/runtime/cpu_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/version.h>

#include <map>
#include <mutex>
#include <unordered_map>

// LibTorch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define SSN_ALLOCATOR_API_2_3 1
#endif

namespace ssn::runtime {
namespace {

constexpr size_t kPage = 4096;

struct CacheState {
  std::mutex mutex;
  size_t min_bytes = 0, idle_limit = 0;
  bool installed = false;
  c10::Allocator* small = nullptr;          // the allocator below min_bytes
  std::unordered_map<void*, size_t> large;  // blocks of the cache in use, by data pointer
  std::multimap<size_t, void*> idle;        // rounded size -> idle block
  size_t idle_bytes = 0, in_use_bytes = 0;
  int64_t hits = 0, misses = 0;
};

CacheState& state() {
  static auto* instance = new CacheState;  // never destroyed: tensors may outlive main
  return *instance;
}

// Frees idle blocks, largest first, until at most `limit` bytes are idle. Under the lock.
void trim_idle(CacheState& s, size_t limit) {
  while (s.idle_bytes > limit && !s.idle.empty()) {
    auto largest = std::prev(s.idle.end());
    c10::free_cpu(largest->second);
    s.idle_bytes -= largest->first;
    s.idle.erase(largest);
  }
}

void cached_delete(void* data) {
  CacheState& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    const auto found = s.large.find(data);
    if (found != s.large.end()) {
      s.idle.emplace(found->second, data);
      s.idle_bytes += found->second;
      s.in_use_bytes -= found->second;
      s.large.erase(found);
      return;
    }
  }
  s.small->raw_deleter()(data);
}

class CachingAllocator final : public c10::Allocator {
 public:
#ifdef SSN_ALLOCATOR_API_2_3
  c10::DataPtr allocate(size_t bytes) override { return allocate_cached(bytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t bytes) const override { return allocate_cached(bytes); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &cached_delete; }

 private:
  static c10::DataPtr allocate_cached(size_t bytes) {
    CacheState& s = state();
    if (bytes < s.min_bytes) {
      c10::DataPtr inner = s.small->allocate(bytes);
      void* data = inner.get();
      inner.release_context();  // freed by cached_delete -> the small allocator's raw deleter
      return {data, data, &cached_delete, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      const auto found = s.idle.find(rounded);
      if (found != s.idle.end()) {
        data = found->second;
        s.idle.erase(found);
        s.idle_bytes -= rounded;
        ++s.hits;
      } else {
        ++s.misses;
        trim_idle(s, s.idle_limit);
      }
    }
    if (!data) data = c10::alloc_cpu(rounded);  // throws on failure
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.large.emplace(data, rounded);
      s.in_use_bytes += rounded;
    }
    return {data, data, &cached_delete, c10::Device(c10::DeviceType::CPU)};
  }
};

// Higher than any priority LibTorch registers with (the tracker uses the same, and installs
// itself later, on top of this one).
constexpr uint8_t kPriority = 250;

}  // namespace

void install_cpu_cache(size_t min_bytes, size_t idle_limit_bytes) {
  static CachingAllocator allocator;
  CacheState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.installed) return;
  c10::Allocator* current = c10::GetCPUAllocator();
  TORCH_CHECK(current->raw_deleter() != nullptr,
              "install_cpu_cache: the CPU allocator does not support raw deletion");
  s.small = current;
  s.min_bytes = std::max<size_t>(min_bytes, 1);
  s.idle_limit = idle_limit_bytes;
  s.installed = true;
  c10::SetCPUAllocator(&allocator, kPriority);
}

bool cpu_cache_installed() {
  CacheState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.installed;
}

CpuCacheStats cpu_cache_stats() {
  CacheState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return {s.hits, s.misses, static_cast<int64_t>(s.idle_bytes),
          static_cast<int64_t>(s.in_use_bytes)};
}

void release_cpu_cache() {
  CacheState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  trim_idle(s, 0);
}

}  // namespace ssn::runtime
