#include "kernels/allocator.h"

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "kernels/error.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/caching_allocator.h"
#endif

namespace metatape::kernels {
namespace {

std::atomic<std::size_t> host_in_use{0};
std::atomic<std::size_t> host_peak{0};

std::size_t rounded_host_bytes(std::size_t bytes) {
  const std::size_t rounded = (bytes + cpu_alignment - 1) / cpu_alignment * cpu_alignment;
  return rounded == 0 ? cpu_alignment : rounded;
}

void raise_host_peak(std::size_t now) {
  std::size_t peak = host_peak.load(std::memory_order_relaxed);
  while (now > peak && !host_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
}

}  // namespace

void* allocate(std::size_t bytes, Device device) {
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    return cuda::CachingAllocator::instance().allocate(bytes);
#else
    fail(
        "allocate: CUDA memory requested but this build has no CUDA backend "
        "(configure with -DMETATAPE_CUDA=ON)");
#endif
  }
  const std::size_t rounded = rounded_host_bytes(bytes);
  void* ptr = std::aligned_alloc(cpu_alignment, rounded);
  if (ptr == nullptr) {
    fail("allocate: out of host memory allocating " + std::to_string(bytes) + " bytes");
  }
  raise_host_peak(host_in_use.fetch_add(rounded, std::memory_order_relaxed) + rounded);
  return ptr;
}

void deallocate(void* ptr, std::size_t bytes, Device device) {
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    cuda::CachingAllocator::instance().deallocate(ptr);
#endif
    return;
  }
  std::free(ptr);
  host_in_use.fetch_sub(rounded_host_bytes(bytes), std::memory_order_relaxed);
}

HostMemoryStats host_memory_stats() {
  return {host_in_use.load(std::memory_order_relaxed), host_peak.load(std::memory_order_relaxed)};
}

void reset_host_peak() { host_peak.store(host_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace metatape::kernels
