// Raw memory for tensor storage. CPU blocks are 64-byte aligned. CUDA blocks come from a caching,
// stream-ordered allocator (kernels/cuda/caching_allocator.*) so the hot path never calls cudaMalloc.
#pragma once

#include <cstddef>

#include "kernels/view.h"

namespace metatape::kernels {

constexpr std::size_t cpu_alignment = 64;

void* allocate(std::size_t bytes, Device device);
// `bytes` must be the size given to allocate() for this pointer.
void deallocate(void* ptr, std::size_t bytes, Device device);

// Host (CPU) tensor storage, process-wide: bytes held by live CPU blocks (after rounding to the
// alignment) and the high-water mark since process start or the last reset_host_peak(). Kept with
// relaxed atomics (one add per allocation and per free; the peak is raised only when exceeded), so
// reading them is cheap but a value read while other threads allocate is a snapshot. CUDA memory is
// counted by the caching allocator (kernels/cuda/caching_allocator.h).
struct HostMemoryStats {
  std::size_t bytes_in_use = 0;
  std::size_t peak_bytes_in_use = 0;
};
HostMemoryStats host_memory_stats();
void reset_host_peak();  // peak := bytes in use now

}  // namespace metatape::kernels
