#include "kernels/cuda/caching_allocator.h"

#include <string>

#include "kernels/cuda/runtime.h"
#include "kernels/error.h"

namespace metatape::kernels::cuda {

CachingAllocator& CachingAllocator::instance() {
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

std::size_t CachingAllocator::size_class(std::size_t bytes) {
  constexpr std::size_t minimum = 512;
  if (bytes <= minimum) return minimum;
  std::size_t power = minimum;
  while (power * 2 <= bytes) power *= 2;
  const std::size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(std::size_t bytes) {
  const std::size_t size = size_class(bytes);
  const cudaStream_t stream = current_stream();
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  auto it = free_.find({stream, size});
  if (it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= size;
    ++stats_.cache_hits;
  } else {
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cache_locked();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      throw_cuda_error(status, __FILE__, __LINE__, "allocate",
                       std::to_string(bytes) + " bytes requested, " + std::to_string(stats_.bytes_in_use) +
                           " in use, " + std::to_string(stats_.bytes_cached) +
                           " cached; free tensors or reduce the meta-batch");
    }
    ++stats_.device_allocations;
  }
  live_.emplace(ptr, Block{size, stream});
  stats_.bytes_in_use += size;
  ++stats_.live_blocks;
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  if (poison_) {
    METATAPE_CUDA_CHECK(cudaMemsetAsync(ptr, 0xFF, size, stream), "allocate",
                        "poisoning " + std::to_string(size) + " bytes");
  }
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    fail("deallocate: pointer was not allocated by the CUDA caching allocator (double free?)");
  }
  const Block block = it->second;
  live_.erase(it);
  free_[{block.stream, block.size}].push_back(ptr);
  stats_.bytes_in_use -= block.size;
  stats_.bytes_cached += block.size;
  --stats_.live_blocks;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes_in_use = stats_.bytes_in_use;
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cache_locked();
}

void CachingAllocator::release_cache_locked() {
  // Freed blocks may still be read or written by queued work on their streams.
  METATAPE_CUDA_CHECK(cudaDeviceSynchronize(), "release_cache", "device synchronise");
  for (auto& [key, blocks] : free_) {
    for (void* ptr : blocks) {
      METATAPE_CUDA_CHECK(cudaFree(ptr), "release_cache", std::to_string(key.second) + " bytes");
    }
  }
  free_.clear();
  stats_.bytes_cached = 0;
}

void CachingAllocator::set_poison(bool enabled) {
  std::lock_guard<std::mutex> lock(mutex_);
  poison_ = enabled;
}

bool CachingAllocator::poison() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return poison_;
}

}  // namespace metatape::kernels::cuda
