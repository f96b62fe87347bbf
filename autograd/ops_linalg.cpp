// Matrix products. With C = op(A) op(B): dA = g op(B)^T (transposed back when A was), dB = op(A)^T g.
// Both are gemms with other flags, so the backward is itself differentiable: second order is exact.
#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {
namespace {

std::int64_t rows(const Tensor& t, bool trans) { return t.dim(trans ? -1 : -2); }
std::int64_t cols(const Tensor& t, bool trans) { return t.dim(trans ? -2 : -1); }

// Sums the batch axis away when `grad` is batched but the operand it belongs to is shared (rank 2).
Tensor unbatch_to(const Tensor& grad, const Tensor& operand) {
  return grad.rank() == operand.rank() ? grad : sum(grad, 0);
}

Tensor gemm_forward(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  detail::check_same_dtype("matmul", a, b);
  detail::check_rank("matmul", a, 2, 3, "left operand");
  detail::check_rank("matmul", b, 2, 3, "right operand");
  if (cols(a, ta) != rows(b, tb)) {
    fail("matmul: inner dimensions differ, " + describe(a) + (ta ? " (transposed)" : "") + " and " + describe(b) +
         (tb ? " (transposed)" : "") + ": " + std::to_string(cols(a, ta)) + " vs " + std::to_string(rows(b, tb)));
  }
  if (a.rank() == 3 && b.rank() == 3 && a.dim(0) != b.dim(0)) {
    fail("matmul: batch sizes differ, " + describe(a) + " and " + describe(b));
  }
  const std::int64_t m = rows(a, ta), n = cols(b, tb);
  const Shape shape = a.rank() == 3 ? Shape{a.dim(0), m, n} : b.rank() == 3 ? Shape{b.dim(0), m, n} : Shape{m, n};
  Tensor c = detail::empty_as(a, shape);
  kernels::gemm(a.view(), ta, b.view(), tb, c.view(), 1.0, 0.0);
  return c;
}

}  // namespace

Tensor gemm(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  Tensor c = gemm_forward(a, ta, b, tb);
  if (!should_record({&a, &b})) return c;
  return record("matmul", c, {a, b}, [ta, tb](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    const Tensor& a = n.inputs[0];
    const Tensor& b = n.inputs[1];
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = unbatch_to(ta ? gemm(b, tb, g, true) : gemm(g, false, b, !tb), a);
    if (needs[1]) {
      if (b.rank() == 2 && a.rank() == 3 && !ta) {
        // A batched A against a shared B: dB = sum_t A_t^T G_t (or G_t^T A_t) is one GEMM over the
        // stacked rows, assigned at once instead of T products materialised and then summed.
        const Tensor a2 = reshape(a, Shape{a.dim(0) * a.dim(1), a.dim(2)});
        const Tensor g2 = reshape(g, Shape{g.dim(0) * g.dim(1), g.dim(2)});
        r[1] = tb ? gemm(g2, true, a2, false) : gemm(a2, true, g2, false);
      } else {
        r[1] = unbatch_to(tb ? gemm(g, true, a, ta) : gemm(a, !ta, g, false), b);
      }
    }
    return r;
  });
}

Tensor matmul(const Tensor& a, const Tensor& b) { return gemm(a, false, b, false); }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_same_dtype("linear", x, weight);
  detail::check_rank("linear", weight, 2, 3, "weight");
  detail::check_rank("linear", x, weight.rank() == 3 ? 3 : 2, 3, "input");
  if (x.dim(-1) != weight.dim(-1)) {
    fail("linear: input has " + std::to_string(x.dim(-1)) + " features, weight " + weight.shape().str() + " expects " +
         std::to_string(weight.dim(-1)) + " (check the feature window)");
  }
  if (weight.rank() == 3 && x.dim(0) != weight.dim(0)) {
    fail("linear: input has " + std::to_string(x.dim(0)) + " tasks, weight " + weight.shape().str() + " has " +
         std::to_string(weight.dim(0)));
  }
  const std::int64_t out_features = weight.dim(-2);
  Shape out_shape = x.shape();
  out_shape[x.rank() - 1] = out_features;
  if (bias.defined()) {
    detail::check_same_dtype("linear", x, bias);
    if (kernels::broadcast_shapes(bias.shape(), out_shape, "linear (bias)") != out_shape) {
      fail("linear: bias " + bias.shape().str() + " does not broadcast to the output " + out_shape.str() +
           " (expected (" + std::to_string(out_features) + "))");
    }
  }
  // With a bias, y starts as the broadcast bias and the GEMM accumulates into it (beta 1): one pass
  // over y instead of three (the GEMM's zeroing of a fresh output, the GEMM, a bias add).
  Tensor y = detail::empty_as(x, out_shape);
  double beta = 0.0;
  if (bias.defined()) {
    kernels::broadcast_to(bias.view(), y.view());
    beta = 1.0;
  }
  if (weight.rank() == 2) {
    const std::int64_t flat_rows = x.numel() / x.dim(-1);
    const kernels::View x2{x.raw_data(), Shape{flat_rows, x.dim(-1)}, x.dtype(), x.device()};
    const kernels::View y2{y.raw_data(), Shape{flat_rows, out_features}, y.dtype(), y.device()};
    kernels::gemm(x2, false, weight.view(), true, y2, 1.0, beta);
  } else {
    kernels::gemm(x.view(), false, weight.view(), true, y.view(), 1.0, beta);
  }
  if (!should_record({&x, &weight, &bias})) return y;
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", y, std::move(inputs), [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    const Tensor& x = n.inputs[0];
    const Tensor& w = n.inputs[1];
    std::vector<Tensor> r(n.inputs.size());
    if (needs[0]) r[0] = gemm(g, false, w, false);
    if (needs[1]) {
      if (w.rank() == 3) {
        r[1] = gemm(g, true, x, false);
      } else {
        const std::int64_t flat = x.numel() / x.dim(-1);
        r[1] = gemm(reshape(g, Shape{flat, g.dim(-1)}), true, reshape(x, Shape{flat, x.dim(-1)}), false);
      }
    }
    if (n.inputs.size() > 2 && needs[2]) r[2] = sum_to(g, n.inputs[2].shape());
    return r;
  });
}

// With D = |a|^2 1^T + 1 |b|^2^T - 2 a b^T:
// dA = 2 (rowsum(g) * a - g b), dB = 2 (colsum(g)^T * b - g^T a), all differentiable ops.
Tensor pairwise_sqdist(const Tensor& a, const Tensor& b) {
  detail::check_same_dtype("pairwise_sqdist", a, b);
  detail::check_rank("pairwise_sqdist", a, 2, 3, "first operand");
  detail::check_rank("pairwise_sqdist", b, 2, 3, "second operand");
  if (a.dim(-1) != b.dim(-1) || (a.rank() == 3 && b.rank() == 3 && a.dim(0) != b.dim(0))) {
    fail("pairwise_sqdist: " + describe(a) + " and " + describe(b) + " need the same feature size (and task count)");
  }
  const std::int64_t batch = a.rank() == 3 ? a.dim(0) : (b.rank() == 3 ? b.dim(0) : 0);
  const Shape shape = batch ? Shape{batch, a.dim(-2), b.dim(-2)} : Shape{a.dim(-2), b.dim(-2)};
  Tensor d = detail::empty_as(a, shape);
  kernels::pairwise_sqdist(a.view(), b.view(), d.view());
  if (!should_record({&a, &b})) return d;
  return record("pairwise_sqdist", d, {a, b}, [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    const Tensor& a = n.inputs[0];
    const Tensor& b = n.inputs[1];
    std::vector<Tensor> r(2);
    if (needs[0]) {
      const Tensor row = sum(g, -1, true);
      r[0] = unbatch_to(affine(sub(mul(row, a), gemm(g, false, b, false)), 2.0, 0.0), a);
    }
    if (needs[1]) {
      const Tensor col = transpose(sum(g, -2, true));
      r[1] = unbatch_to(affine(sub(mul(col, b), gemm(g, true, a, false)), 2.0, 0.0), b);
    }
    return r;
  });
}

Tensor cosine_similarity(const Tensor& a, const Tensor& b, double eps) {
  auto normalize = [eps](const Tensor& v) { return div(v, sqrt(affine(sum(square(v), -1, true), 1.0, eps))); };
  return gemm(normalize(a), false, normalize(b), true);
}

}  // namespace metatape
