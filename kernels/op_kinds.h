// The elementwise operation kinds shared by every backend.
#pragma once

#include <cstdint>

namespace metatape::kernels {

// y = f(x; alpha, beta). Parameters not named below are ignored.
enum class UnaryOp {
  affine,  // alpha * x + beta  (neg, scaling, shifting, 1 - x)
  exp,
  log,
  sqrt,
  square,
  abs,
  sign,  // -1, 0, +1
  pow,   // x ^ alpha
  relu,
  leaky_relu,  // x > 0 ? x : alpha * x
  elu,         // x > 0 ? x : alpha * (exp(x) - 1)
  tanh,
  sigmoid,
  softplus,    // log(1 + exp(x)), computed without overflow
  gelu,        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  step,        // x > alpha ? 1 : 0
  in_range,    // alpha < x < beta ? 1 : 0   (clamp's pass-through mask)
  clamp,       // min(max(x, alpha), beta)
  reciprocal,  // 1 / x
};

// out = a op b with numpy broadcasting of a and b to out's shape.
enum class BinaryOp { add, sub, mul, div, maximum, minimum, equal, greater };

// A 2-D sliding window over x (N, C, H, W): window (kh, kw), stride (sh, sw), zero padding (ph, pw)
// and dilation (dh, dw), giving out_h x out_w positions. The column layout of im2col / col2im is
// (N, out_h * out_w, C * kh * kw): row (n, oh, ow), column (c, i, j) holds
// x[n, c, oh * sh - ph + i * dh, ow * sw - pw + j * dw], or 0 where that falls in the padding.
struct WindowGeometry {
  std::int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, out_h = 0, out_w = 0;
};

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

}  // namespace metatape::kernels
