// Reductions. sum_to and expand are each other's adjoints, so every reduction's backward is an expand
// and vice versa, to any order.
#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {

Tensor sum_to(const Tensor& x, const Shape& shape) {
  detail::check_float("sum", x);
  if (x.shape() == shape) return x;
  // Validates that `shape` broadcasts to x's shape.
  if (shape.rank > x.rank() || kernels::broadcast_shapes(shape, x.shape(), "sum_to") != x.shape()) {
    fail("sum_to: shape " + shape.str() + " does not broadcast to " + describe(x));
  }
  Tensor y = detail::empty_as(x, shape);
  kernels::sum_to(x.view(), y.view());
  if (!should_record({&x})) return y;
  return record("sum", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{expand(g, n.inputs[0].shape())};
  });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  detail::check_float("expand", x);
  if (x.shape() == shape) return x;
  if (kernels::broadcast_shapes(x.shape(), shape, "expand") != shape) {
    fail("expand: " + describe(x) + " does not broadcast to " + shape.str());
  }
  Tensor y = detail::empty_as(x, shape);
  kernels::broadcast_to(x.view(), y.view());
  if (!should_record({&x})) return y;
  return record("expand", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{sum_to(g, n.inputs[0].shape())};
  });
}

namespace {

Shape keep_shape(const Tensor& x, int axis) {
  Shape s = x.shape();
  s[axis] = 1;
  return s;
}

Shape drop_axis(const Shape& s, int axis) {
  Shape out = Shape::of_rank(s.rank - 1);
  for (int i = 0, j = 0; i < s.rank; ++i) {
    if (i != axis) out[j++] = s[i];
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return sum_to(x, Shape{}); }

Tensor sum(const Tensor& x, int axis, bool keepdim) {
  const int a = detail::normalize_axis("sum", x, axis);
  const Tensor kept = sum_to(x, keep_shape(x, a));
  return keepdim ? kept : reshape(kept, drop_axis(x.shape(), a));
}

Tensor mean(const Tensor& x) {
  if (x.numel() == 0) fail("mean: " + describe(x) + " is empty");
  return affine(sum(x), 1.0 / static_cast<double>(x.numel()), 0.0);
}

Tensor mean(const Tensor& x, int axis, bool keepdim) {
  const int a = detail::normalize_axis("mean", x, axis);
  if (x.dim(a) == 0) fail("mean: axis " + std::to_string(axis) + " of " + describe(x) + " is empty");
  return affine(sum(x, a, keepdim), 1.0 / static_cast<double>(x.dim(a)), 0.0);
}

// Gradient flows to the first maximum only: g expanded times a constant one-hot mask along the axis.
Tensor max(const Tensor& x, int axis, bool keepdim) {
  detail::check_float("max", x);
  const int a = detail::normalize_axis("max", x, axis);
  if (x.dim(a) == 0) fail("max: axis " + std::to_string(axis) + " of " + describe(x) + " is empty");
  const Shape kept = keep_shape(x, a);
  Tensor values = detail::empty_as(x, kept);
  Tensor idx = Tensor::empty(kept, DType::i64, x.device());
  kernels::max_along(x.view(), a, values.view(), idx.view());
  if (should_record({&x})) {
    Tensor mask;
    {
      NoGradGuard off;
      Shape line = Shape::of_rank(x.rank());
      line[a] = x.dim(a);
      const Tensor positions = reshape(Tensor::arange(x.dim(a), x.dtype(), x.device()), line);
      Tensor chosen = detail::empty_as(x, kept);
      kernels::convert(idx.view(), chosen.view());
      mask = detail::empty_like(x);
      kernels::binary(kernels::BinaryOp::equal, positions.view(), chosen.view(), mask.view());
    }
    values = record("max", values, {x}, [mask](const Node& n, const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{mul(expand(g, n.inputs[0].shape()), mask)};
    });
  }
  return keepdim ? values : reshape(values, drop_axis(x.shape(), a));
}

Tensor argmax(const Tensor& x, int axis) {
  detail::check_float("argmax", x);
  const int a = detail::normalize_axis("argmax", x, axis);
  Shape kept = x.shape();
  kept[a] = 1;
  Tensor values = detail::empty_as(x, kept);
  Tensor idx = Tensor::empty(kept, DType::i64, x.device());
  kernels::max_along(x.view(), a, values.view(), idx.view());
  return reshape(idx, drop_axis(x.shape(), a));
}

}  // namespace metatape
