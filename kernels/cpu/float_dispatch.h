// Internal to the CPU backend: calling a generic lambda with the element type of a float view, and
// the broadcast strides every elementwise kernel uses.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "kernels/error.h"
#include "kernels/view.h"

namespace metatape::kernels::cpu {

template <class Fn>
void with_float_type(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      fn(float{});
      return;
    case DType::f64:
      fn(double{});
      return;
    case DType::i64:
      break;
  }
  fail(std::string(op) + ": needs an f32 or f64 tensor, got " + dtype_name(dtype));
}

// Element strides of `in` when broadcast to `out` (rank of out, 0 on broadcast axes), padded on the
// left to max_rank so loops can always run four deep.
struct BroadcastStrides {
  std::array<std::int64_t, max_rank> dims{};     // out dims, left-padded with 1
  std::array<std::int64_t, max_rank> strides{};  // element strides of `in`
};

inline BroadcastStrides broadcast_strides(const Shape& in, const Shape& out) {
  BroadcastStrides b;
  const Shape pin = pad_rank(in, max_rank);
  const Shape pout = pad_rank(out, max_rank);
  std::int64_t stride = 1;
  for (int i = max_rank - 1; i >= 0; --i) {
    const auto k = static_cast<std::size_t>(i);
    b.dims[k] = pout[i];
    b.strides[k] = (pin[i] == 1 && pout[i] != 1) ? 0 : stride;
    stride *= pin[i];
  }
  return b;
}

}  // namespace metatape::kernels::cpu
