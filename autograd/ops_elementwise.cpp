// Elementwise ops. Second derivatives: every backward below is a product of the incoming gradient with
// a differentiable expression of the op's input or output, or with a constant mask where the true
// second derivative is zero almost everywhere (relu, abs, leaky_relu, clamp, where, dropout).
#include <cmath>

#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {
namespace {

using detail::empty_like;
using kernels::BinaryOp;
using kernels::UnaryOp;

Tensor run_unary(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  detail::check_float(kernels::unary_op_name(op), x);
  Tensor out = empty_like(x);
  kernels::unary(op, x.view(), out.view(), alpha, beta);
  return out;
}

Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = kernels::binary_op_name(op);
  detail::check_same_dtype(name, a, b);
  const Shape shape = kernels::broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = detail::empty_as(a, shape);
  kernels::binary(op, a.view(), b.view(), out.view());
  return out;
}

// A unary op whose derivative is `dydx(node)`, a tensor of x's shape built from differentiable ops.
template <class Derivative>
Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, double alpha, double beta, Derivative dydx) {
  Tensor y = run_unary(op, x, alpha, beta);
  if (!should_record({&x})) return y;
  return record(name, y, {x}, [dydx](const Node& node, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{mul(g, dydx(node))};
  });
}

// A constant 0/1 mask (not recorded): the derivative of piecewise-linear ops.
Tensor mask_of(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  NoGradGuard off;
  return run_unary(op, x.detach(), alpha, beta);
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = run_binary(BinaryOp::add, a, b);
  if (!should_record({&a, &b})) return y;
  return record("add", y, {a, b}, [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = sum_to(g, n.inputs[0].shape());
    if (needs[1]) r[1] = sum_to(g, n.inputs[1].shape());
    return r;
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = run_binary(BinaryOp::sub, a, b);
  if (!should_record({&a, &b})) return y;
  return record("sub", y, {a, b}, [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = sum_to(g, n.inputs[0].shape());
    if (needs[1]) r[1] = neg(sum_to(g, n.inputs[1].shape()));
    return r;
  });
}

// d(ab)/da = b, d(ab)/db = a: the second derivative is the cross term, recorded through mul.
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = run_binary(BinaryOp::mul, a, b);
  if (!should_record({&a, &b})) return y;
  return record("mul", y, {a, b}, [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = sum_to(mul(g, n.inputs[1]), n.inputs[0].shape());
    if (needs[1]) r[1] = sum_to(mul(g, n.inputs[0]), n.inputs[1].shape());
    return r;
  });
}

// d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -y/b.
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = run_binary(BinaryOp::div, a, b);
  if (!should_record({&a, &b})) return y;
  return record("div", y, {a, b}, [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    const Tensor& b = n.inputs[1];
    if (needs[0]) r[0] = sum_to(div(g, b), n.inputs[0].shape());
    if (needs[1]) r[1] = neg(sum_to(div(mul(g, n.output), b), b.shape()));
    return r;
  });
}

Tensor affine(const Tensor& x, double alpha, double beta) {
  Tensor y = run_unary(UnaryOp::affine, x, alpha, beta);
  if (!should_record({&x})) return y;
  return record("affine", y, {x}, [alpha](const Node&, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{affine(g, alpha, 0.0)};
  });
}

Tensor neg(const Tensor& x) { return affine(x, -1.0, 0.0); }

Tensor exp(const Tensor& x) {
  return unary_op("exp", UnaryOp::exp, x, 0, 0, [](const Node& n) { return n.output; });
}

Tensor log(const Tensor& x) {
  Tensor y = run_unary(UnaryOp::log, x);
  if (!should_record({&x})) return y;
  return record("log", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{div(g, n.inputs[0])};
  });
}

// dy/dx = 1 / (2 y).
Tensor sqrt(const Tensor& x) {
  Tensor y = run_unary(UnaryOp::sqrt, x);
  if (!should_record({&x})) return y;
  return record("sqrt", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{div(affine(g, 0.5, 0.0), n.output)};
  });
}

Tensor pow(const Tensor& x, double p) {
  return unary_op("pow", UnaryOp::pow, x, p, 0,
                  [p](const Node& n) { return affine(pow(n.inputs[0], p - 1.0), p, 0.0); });
}

Tensor square(const Tensor& x) {
  return unary_op("square", UnaryOp::square, x, 0, 0, [](const Node& n) { return affine(n.inputs[0], 2.0, 0.0); });
}

Tensor abs(const Tensor& x) {
  return unary_op("abs", UnaryOp::abs, x, 0, 0, [](const Node& n) { return mask_of(UnaryOp::sign, n.inputs[0]); });
}

Tensor relu(const Tensor& x) {
  return unary_op("relu", UnaryOp::relu, x, 0, 0,
                  [](const Node& n) { return mask_of(UnaryOp::step, n.inputs[0], 0.0); });
}

Tensor leaky_relu(const Tensor& x, double slope) {
  return unary_op("leaky_relu", UnaryOp::leaky_relu, x, slope, 0, [slope](const Node& n) {
    return affine(mask_of(UnaryOp::step, n.inputs[0], 0.0), 1.0 - slope, slope);
  });
}

// x > 0: 1; else alpha e^x = y + alpha, differentiable through y.
Tensor elu(const Tensor& x, double alpha) {
  return unary_op("elu", UnaryOp::elu, x, alpha, 0, [alpha](const Node& n) {
    const Tensor positive = mask_of(UnaryOp::step, n.inputs[0], 0.0);
    const Tensor one = Tensor::ones(Shape{}, n.output.dtype(), n.output.device());
    return where(positive, one, affine(n.output, 1.0, alpha));
  });
}

Tensor tanh(const Tensor& x) {
  return unary_op("tanh", UnaryOp::tanh, x, 0, 0, [](const Node& n) { return affine(square(n.output), -1.0, 1.0); });
}

Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", UnaryOp::sigmoid, x, 0, 0,
                  [](const Node& n) { return mul(n.output, affine(n.output, -1.0, 1.0)); });
}

Tensor softplus(const Tensor& x) {
  return unary_op("softplus", UnaryOp::softplus, x, 0, 0, [](const Node& n) { return sigmoid(n.inputs[0]); });
}

// gelu(x) = 0.5 x (1 + tanh u), u = c (x + k x^3);
// gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 k x^2), built from differentiable ops.
Tensor gelu(const Tensor& x) {
  return unary_op("gelu", UnaryOp::gelu, x, 0, 0, [](const Node& n) {
    constexpr double c = 0.7978845608028654;
    constexpr double k = 0.044715;
    const Tensor& v = n.inputs[0];
    const Tensor v2 = square(v);
    const Tensor t = tanh(affine(mul(v, affine(v2, k, 1.0)), c, 0.0));
    const Tensor first = affine(t, 0.5, 0.5);
    const Tensor second = mul(mul(affine(v, 0.5 * c, 0.0), affine(square(t), -1.0, 1.0)), affine(v2, 3.0 * k, 1.0));
    return add(first, second);
  });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  if (!(lo <= hi)) {
    fail("clamp: lower bound " + std::to_string(lo) + " is above upper bound " + std::to_string(hi));
  }
  return unary_op("clamp", UnaryOp::clamp, x, lo, hi,
                  [lo, hi](const Node& n) { return mask_of(UnaryOp::in_range, n.inputs[0], lo, hi); });
}

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  detail::check_same_dtype("where", a, b);
  detail::check_same_dtype("where", mask, a);
  const Shape shape =
      kernels::broadcast_shapes(kernels::broadcast_shapes(a.shape(), b.shape(), "where"), mask.shape(), "where");
  Tensor y = detail::empty_as(a, shape);
  kernels::where(mask.view(), a.view(), b.view(), y.view());
  if (!should_record({&a, &b})) return y;
  const Tensor m = mask.detach();
  return record("where", y, {a, b}, [m](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = sum_to(mul(g, m), n.inputs[0].shape());
    if (needs[1]) r[1] = sum_to(mul(g, affine(m, -1.0, 1.0)), n.inputs[1].shape());
    return r;
  });
}

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  if (!(p >= 0.0 && p < 1.0)) {
    fail("dropout: probability " + std::to_string(p) + " is outside [0, 1)");
  }
  if (!training || p == 0.0) return x;
  std::vector<double> keep(static_cast<std::size_t>(x.numel()));
  const double scale = 1.0 / (1.0 - p);
  for (double& k : keep) k = gen.uniform() < p ? 0.0 : scale;
  const Tensor mask = Tensor::from_vector(keep, x.shape(), x.dtype(), x.device());
  return mul(x, mask);
}

Tensor greater(const Tensor& a, const Tensor& b) {
  NoGradGuard off;
  return run_binary(BinaryOp::greater, a.detach(), b.detach());
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return affine(a, 1.0, b); }
Tensor operator-(const Tensor& a, double b) { return affine(a, 1.0, -b); }
Tensor operator*(const Tensor& a, double b) { return affine(a, b, 0.0); }
Tensor operator/(const Tensor& a, double b) { return affine(a, 1.0 / b, 0.0); }
Tensor operator+(double a, const Tensor& b) { return affine(b, 1.0, a); }
Tensor operator-(double a, const Tensor& b) { return affine(b, -1.0, a); }
Tensor operator*(double a, const Tensor& b) { return affine(b, a, 0.0); }

}  // namespace metatape
