#include "kernels/allocator.h"

#include <cstdlib>
#include <new>
#include <string>

#include "kernels/error.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/caching_allocator.h"
#endif

namespace metatape::kernels {

void* allocate(std::size_t bytes, Device device) {
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    return cuda::CachingAllocator::instance().allocate(bytes);
#else
    fail("allocate: CUDA memory requested but this build has no CUDA backend "
         "(configure with -DMETATAPE_CUDA=ON)");
#endif
  }
  const std::size_t rounded = (bytes + cpu_alignment - 1) / cpu_alignment * cpu_alignment;
  void* ptr = std::aligned_alloc(cpu_alignment, rounded == 0 ? cpu_alignment : rounded);
  if (ptr == nullptr) {
    fail("allocate: out of host memory allocating " + std::to_string(bytes) + " bytes");
  }
  return ptr;
}

void deallocate(void* ptr, std::size_t bytes, Device device) {
  (void)bytes;
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    cuda::CachingAllocator::instance().deallocate(ptr);
#endif
    return;
  }
  std::free(ptr);
}

}  // namespace metatape::kernels
