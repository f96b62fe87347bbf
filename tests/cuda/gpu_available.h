// Shared by the test_cuda files: GPU test cases call this first and return when it is false. Without a
// CUDA device (or in a build without the CUDA backend) the case reports itself as skipped in the
// doctest output and passes.
#pragma once

#include <doctest/doctest.h>

#include "kernels/kernels.h"

inline bool gpu_available() {
  if (metatape::kernels::cuda_available()) return true;
#ifdef METATAPE_WITH_CUDA
  MESSAGE("SKIPPED: no CUDA device visible to this process; GPU checks run in scripts/gpu-check.sh");
#else
  MESSAGE("SKIPPED: built without the CUDA backend (configure with -DMETATAPE_CUDA=ON)");
#endif
  return false;
}
