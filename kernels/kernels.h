// The single dispatch point: each function picks the CPU or the CUDA implementation by the device of
// its views. Signatures and contracts: kernels/op_list.inc.
#pragma once

#include "kernels/op_kinds.h"
#include "kernels/view.h"

namespace metatape::kernels {
#include "kernels/op_list.inc"

// True when this build has the CUDA backend and a CUDA device is present.
bool cuda_available();
}  // namespace metatape::kernels
