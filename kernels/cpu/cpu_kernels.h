// The CPU backend: the readable reference every other backend is tested against.
#pragma once

#include "kernels/op_kinds.h"
#include "kernels/view.h"

namespace metatape::kernels::cpu {
#include "kernels/op_list.inc"
}  // namespace metatape::kernels::cpu
