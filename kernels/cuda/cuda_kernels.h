// The CUDA backend: the same signatures as the CPU reference (kernels/op_list.inc). Every kernel runs
// on the calling thread's current stream (kernels/cuda/runtime.h) and never synchronises with the
// host, except copy() to host memory, which must wait for its data.
#pragma once

#include "kernels/op_kinds.h"
#include "kernels/view.h"

namespace metatape::kernels::cuda {
#include "kernels/op_list.inc"

// CUDA devices visible to this process; 0 (never an exception) when there is no driver or device.
int device_count();
}  // namespace metatape::kernels::cuda
