// The caching, stream-ordered device allocator behind every CUDA tensor.
//
// - Size classes: requests round up to 512 B, then to a quarter of their power of two (waste < 25%).
// - Stream-ordered: a block belongs to the stream that was current when it was allocated. Freeing it
//   returns it to that stream's free list at once, without synchronising: work queued later on the
//   same stream runs after every earlier use. A block is only handed out again for that same stream.
// - After warm-up (every size class seen once) allocate() never calls cudaMalloc; statistics count
//   cudaMalloc calls so tests and benches can check it.
// - When cudaMalloc fails the cache is released (device synchronise) and the call retried once.
// - Poisoning (for tests): every block handed out is first filled with 0xFF bytes on its stream (NaN
//   in f32 and f64, -1 in i64), so an element a kernel forgets to write is caught.
// Thread-safe (one mutex). Only device 0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace metatape::kernels::cuda {

struct AllocatorStats {
  std::size_t bytes_in_use = 0;          // size-class bytes of live blocks
  std::size_t peak_bytes_in_use = 0;     // since construction or reset_peak()
  std::size_t bytes_cached = 0;          // size-class bytes of free blocks kept for reuse
  std::uint64_t device_allocations = 0;  // cudaMalloc calls
  std::uint64_t cache_hits = 0;          // allocate() served from the cache
  std::uint64_t live_blocks = 0;
};

class CachingAllocator {
 public:
  // The process-wide instance; intentionally never destroyed (tensors may be freed during exit).
  static CachingAllocator& instance();

  // A block of at least `bytes` on the current stream; never null (0 bytes gives a 512 B block).
  void* allocate(std::size_t bytes);
  // Returns a block from allocate() to its stream's free list. Null is ignored.
  void deallocate(void* ptr);

  AllocatorStats stats() const;
  void reset_peak();
  // Synchronises the device, then cudaFree's every cached (free) block.
  void release_cache();
  void set_poison(bool enabled);
  bool poison() const;

  static std::size_t size_class(std::size_t bytes);

 private:
  CachingAllocator() = default;
  struct Block {
    std::size_t size;
    cudaStream_t stream;
  };
  void release_cache_locked();

  mutable std::mutex mutex_;
  std::map<std::pair<cudaStream_t, std::size_t>, std::vector<void*>> free_;
  std::unordered_map<void*, Block> live_;
  AllocatorStats stats_;
  bool poison_ = false;
};

}  // namespace metatape::kernels::cuda
