// The elementwise operation kinds shared by every backend.
#pragma once

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

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

}  // namespace metatape::kernels
