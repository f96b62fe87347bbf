// Raw memory for tensor storage. CPU blocks are 64-byte aligned. CUDA blocks come from a caching,
// stream-ordered allocator (kernels/cuda/caching_allocator.*) so the hot path never calls cudaMalloc.
#pragma once

#include <cstddef>

#include "kernels/view.h"

namespace metatape::kernels {

constexpr std::size_t cpu_alignment = 64;

void* allocate(std::size_t bytes, Device device);
void deallocate(void* ptr, std::size_t bytes, Device device);

}  // namespace metatape::kernels
