// Shape ops. Each backward is the adjoint layout op: reshape <-> reshape, transpose <-> transpose,
// slice <-> pad_axis, index_select <-> index_add, concat -> slices. All linear, so second derivatives
// are zero and the recorded backward carries the first-order term exactly.
#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {

Tensor reshape(const Tensor& x, const Shape& shape) {
  if (shape.numel() != x.numel()) {
    fail("reshape: cannot view " + describe(x) + " as " + shape.str() + " (" + std::to_string(x.numel()) + " vs " +
         std::to_string(shape.numel()) + " elements)");
  }
  if (shape == x.shape()) return x;
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.impl()->storage;
  impl->offset = x.impl()->offset;
  impl->shape = shape;
  impl->dtype = x.dtype();
  impl->device = x.device();
  Tensor y(std::move(impl));
  if (!should_record({&x})) return y;
  return record("reshape", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{reshape(g, n.inputs[0].shape())};
  });
}

Tensor transpose(const Tensor& x) {
  detail::check_rank("transpose", x, 2, 4, "input");
  Shape shape = x.shape();
  std::swap(shape[x.rank() - 1], shape[x.rank() - 2]);
  Tensor y = detail::empty_as(x, shape);
  kernels::transpose_last2(x.view(), y.view());
  if (!should_record({&x})) return y;
  return record("transpose", y, {x}, [](const Node&, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{transpose(g)};
  });
}

Tensor slice(const Tensor& x, int axis, std::int64_t start, std::int64_t end) {
  const int a = detail::normalize_axis("slice", x, axis);
  if (start < 0 || end > x.dim(a) || start > end) {
    fail("slice: range [" + std::to_string(start) + ", " + std::to_string(end) + ") is outside axis " +
         std::to_string(axis) + " of " + describe(x));
  }
  Shape shape = x.shape();
  shape[a] = end - start;
  Tensor y = detail::empty_as(x, shape);
  kernels::copy_axis_block(x.view(), start, y.view(), 0, a, end - start);
  if (!should_record({&x})) return y;
  return record("slice", y, {x}, [a, start](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{pad_axis(g, n.inputs[0].shape(), a, start)};
  });
}

Tensor pad_axis(const Tensor& x, const Shape& full, int axis, std::int64_t start) {
  const int a = detail::normalize_axis("pad_axis", x, axis);
  Shape expected = full;
  expected[a] = x.dim(a);
  if (full.rank != x.rank() || expected != x.shape() || start < 0 || start + x.dim(a) > full[a]) {
    fail("pad_axis: cannot place " + describe(x) + " at " + std::to_string(start) + " on axis " + std::to_string(axis) +
         " of " + full.str());
  }
  Tensor y = Tensor::zeros(full, x.dtype(), x.device());
  kernels::copy_axis_block(x.view(), 0, y.view(), start, a, x.dim(a));
  if (!should_record({&x})) return y;
  return record("pad_axis", y, {x}, [a, start](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{slice(g, a, start, start + n.inputs[0].dim(a))};
  });
}

Tensor concat(const std::vector<Tensor>& parts, int axis) {
  if (parts.empty()) fail("concat: no tensors given");
  const Tensor& first = parts[0];
  const int a = detail::normalize_axis("concat", first, axis);
  Shape shape = first.shape();
  shape[a] = 0;
  bool record_it = false;
  for (const Tensor& p : parts) {
    detail::check_same_dtype("concat", first, p);
    Shape expected = first.shape();
    expected[a] = p.rank() == first.rank() ? p.dim(a) : -1;
    if (p.rank() != first.rank() || p.shape() != expected) {
      fail("concat: " + describe(p) + " does not match " + describe(first) + " outside axis " + std::to_string(axis));
    }
    shape[a] += p.dim(a);
    record_it = record_it || should_record({&p});
  }
  Tensor y = detail::empty_as(first, shape);
  std::int64_t offset = 0;
  for (const Tensor& p : parts) {
    kernels::copy_axis_block(p.view(), 0, y.view(), offset, a, p.dim(a));
    offset += p.dim(a);
  }
  if (!record_it) return y;
  return record("concat", y, parts, [a](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(n.inputs.size());
    std::int64_t start = 0;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      const std::int64_t len = n.inputs[i].dim(a);
      if (needs[i]) r[i] = slice(g, a, start, start + len);
      start += len;
    }
    return r;
  });
}

namespace {

void check_index(const char* op, const Tensor& index) {
  if (index.dtype() != DType::i64 || index.rank() != 1) {
    fail(std::string(op) + ": index must be a rank-1 i64 tensor, got " + describe(index));
  }
}

}  // namespace

Tensor index_select(const Tensor& x, const Tensor& index) {
  check_index("index_select", index);
  detail::check_rank("index_select", x, 1, 4, "input");
  Shape shape = x.shape();
  shape[0] = index.numel();
  Tensor y = detail::empty_as(x, shape);
  kernels::index_select_rows(x.view(), index.view(), y.view());
  if (!should_record({&x})) return y;
  const Tensor idx = index;
  return record("index_select", y, {x}, [idx](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{index_add(g, idx, n.inputs[0].dim(0))};
  });
}

Tensor index_add(const Tensor& src, const Tensor& index, std::int64_t rows) {
  check_index("index_add", index);
  detail::check_float("index_add", src);
  if (src.rank() < 1 || src.dim(0) != index.numel()) {
    fail("index_add: " + describe(src) + " needs one row per index (" + std::to_string(index.numel()) + ")");
  }
  Shape shape = src.shape();
  shape[0] = rows;
  Tensor y = Tensor::zeros(shape, src.dtype(), src.device());
  kernels::index_add_rows(src.view(), index.view(), y.view());
  if (!should_record({&src})) return y;
  const Tensor idx = index;
  return record("index_add", y, {src}, [idx](const Node&, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{index_select(g, idx)};
  });
}

}  // namespace metatape
