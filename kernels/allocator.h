// Raw memory for tensor storage. CPU blocks are 64-byte aligned. CUDA blocks come from a caching,
// stream-ordered allocator (kernels/cuda/caching_allocator.*) so the hot path never calls cudaMalloc.
//
// CPU blocks up to host_pool_max_block bytes come from a per-thread pool of size classes (4 classes
// per power of two, so a block is at most 25 % larger than asked for): a freed block goes back to
// the freeing thread's free list, and the next request of its class on that thread takes it without
// calling malloc. A meta-step allocates and frees the same sizes every step, so once the pool is
// warm (after the first step) the steady state does no malloc for tensor storage. Each thread caches
// at most its limit in free blocks (set_host_pool_limit(); a free beyond it goes back to the system);
// the default is METATAPE_HOST_POOL_BYTES from the environment, else 64 MiB, and 0 (no pool) in a
// build with AddressSanitizer so its quarantine still catches every use after free. When the pool is
// on under ASan, cached blocks are poisoned (a use after free reports use-after-poison) and the
// slack between the requested size and the class size is poisoned in every block.
// Recycled blocks are not cleared: a tensor's storage holds whatever was there until it is
// written, as with malloc (Tensor::zeros and friends fill what they return).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/view.h"

namespace metatape::kernels {

constexpr std::size_t cpu_alignment = 64;
// CPU blocks above this size are not pooled: malloc'ed and freed each time.
constexpr std::size_t host_pool_max_block = std::size_t{64} << 20;

void* allocate(std::size_t bytes, Device device);
// `bytes` must be the size given to allocate() for this pointer.
void deallocate(void* ptr, std::size_t bytes, Device device);

// Host (CPU) tensor storage, process-wide: bytes held by live CPU blocks (after rounding to the
// alignment) and the high-water mark since process start or the last reset_host_peak(). Kept with
// relaxed atomics (one add per allocation and per free; the peak is raised only when exceeded), so
// reading them is cheap but a value read while other threads allocate is a snapshot. Free blocks
// cached by the per-thread pools are not in use: they are counted in pool_cached_bytes (all threads,
// at their class size). CUDA memory is counted by the caching allocator
// (kernels/cuda/caching_allocator.h).
struct HostMemoryStats {
  std::size_t bytes_in_use = 0;
  std::size_t peak_bytes_in_use = 0;
  std::size_t pool_cached_bytes = 0;
};
HostMemoryStats host_memory_stats();
void reset_host_peak();  // peak := bytes in use now

// The calling thread's pool. Counts since the thread started (or the last reset_host_pool_counters()):
// `reused` allocations served from the free lists, `fresh` allocations that went to malloc (pool
// empty for that class, pool off, or a block above host_pool_max_block), `cached` frees kept in the
// pool, `released` frees given back to the system (pool off, over the limit, or too large).
struct HostPoolStats {
  std::size_t limit_bytes = 0;
  std::size_t cached_bytes = 0;
  std::uint64_t reused = 0;
  std::uint64_t fresh = 0;
  std::uint64_t cached = 0;
  std::uint64_t released = 0;
};
HostPoolStats host_pool_stats();
void reset_host_pool_counters();
// Sets the calling thread's cache limit in bytes (0: no pool; frees then go straight to the system).
// Cached blocks beyond the new limit are given back at once. Returns the previous limit.
std::size_t set_host_pool_limit(std::size_t bytes);
// Gives every free block cached by the calling thread back to the system.
void trim_host_pool();
// The limit new threads start with: METATAPE_HOST_POOL_BYTES (a byte count; 0 disables the pool),
// else 64 MiB (0 under AddressSanitizer). Throws Error naming the variable when it is not a number.
std::size_t default_host_pool_limit();
// The reading of METATAPE_HOST_POOL_BYTES: digits, optionally followed by K, M or G (binary units).
std::size_t parse_host_pool_bytes(const char* text);

}  // namespace metatape::kernels
