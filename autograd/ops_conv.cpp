// Convolution and pooling, written as compositions of differentiable ops around one layout pair,
// im2col and its adjoint col2im (kernels/op_kinds.h, WindowGeometry), so the first and second
// derivatives (and every higher one) are exact by construction:
//
//   conv2d(x, w, b)  = im2col (padding read as 0)  ->  linear(cols, w as (O, C*kh*kw), b)
//                      ->  (N, Ho*Wo, O) transposed to (N, O, Ho, Wo)
//   conv1d           = conv2d on (N, C, 1, L) with a (O, C, 1, k) filter
//   max_pool2d       = im2col of x viewed as (N*C, 1, H, W)  ->  max over the window (gradient to its first maximum)
//   avg_pool2d       = the same  ->  mean over the window
//   flatten          = reshape to (N, rest)
//
// im2col and col2im are linear and each other's adjoint: im2col's backward is col2im of the incoming
// gradient, col2im's backward is im2col, so a chain of them differentiates forever. Hence:
//  - backward: d/dx = col2im(g W) -- the transposed convolution, conv2d's data gradient;
//    d/dw = g^T cols -- the filter gradient (a correlation of g with x); d/db = g summed.
//  - second derivative: each gradient is linear in g and in the other operand, through the same layout ops
//    and GEMMs, so its derivative is again a data-gradient and a filter-gradient convolution (the double
//    backward of a convolution is convolutions), recorded exactly. conv2d is linear in x and in w separately;
//    the only second-order terms are the x-w cross terms. Pooling is piecewise linear: max's second derivative
//    is zero almost everywhere (its mask is a constant), mean's is zero.
//
// Cost: the column matrix holds N * Ho * Wo * C * kh * kw elements (kh * kw times the input for stride 1) and is
// kept for the backward. im2col is one pass over it (a gather), col2im one pass over x (CUDA: each element sums
// its own window entries, no atomics; CPU: a scatter in a fixed order). Before these kernels the layout was an
// i64 index plus one-element index_select / index_add, which took 30-50 ms for a Conv-4 middle layer on the
// development machine against about 5 ms of GEMM; bench/autograd_cpu.cpp's conv rows measure the kernels now.
//
// Shapes are limited by the library's rank <= 4: conv2d's input is (N, C, H, W) with no extra task
// dimension (fold tasks into N); conv1d's is (N, C, L). groups = 1 only.
#include <algorithm>
#include <string>
#include <vector>

#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {

namespace {

std::string num(std::int64_t v) { return std::to_string(v); }

void check_positive(const char* op, const char* what, std::int64_t v) {
  if (v <= 0) fail(std::string(op) + ": " + what + " must be positive, got " + num(v) + " (use 1 for none)");
}

// Output length of one spatial axis, with the "kernel larger than the padded input" check.
std::int64_t out_len(const char* op, const char* axis, std::int64_t in, std::int64_t kernel, std::int64_t stride,
                     std::int64_t padding, std::int64_t dilation) {
  const std::int64_t span = dilation * (kernel - 1) + 1;
  const std::int64_t padded = in + 2 * padding;
  if (span > padded) {
    fail(std::string(op) + ": the kernel " + axis + " spans " + num(span) + " (kernel " + num(kernel) + ", dilation " +
         num(dilation) + ") but the padded input " + axis + " is only " + num(padded) + " (" + num(in) +
         " + 2 * padding " + num(padding) + "); use a smaller kernel or dilation, more padding, or a larger input");
  }
  return (padded - span) / stride + 1;
}

Tensor conv2d_impl(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t sh, std::int64_t sw,
                   std::int64_t ph, std::int64_t pw, std::int64_t dh, std::int64_t dw) {
  detail::check_same_dtype(op, x, w);
  if (b.defined()) detail::check_same_dtype(op, x, b);
  if (x.device() != w.device() || (b.defined() && b.device() != x.device())) {
    fail(std::string(op) + ": input, weight and bias must be on one device, got " + describe(x) + ", " + describe(w) +
         (b.defined() ? ", " + describe(b) : std::string()) + " (move them with .to(Device::...))");
  }
  check_positive(op, "stride", std::min(sh, sw));
  check_positive(op, "dilation", std::min(dh, dw));
  if (std::min(ph, pw) < 0) fail(std::string(op) + ": padding must be >= 0, got " + num(std::min(ph, pw)));
  const std::int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const std::int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  if (w.dim(1) != c) {
    fail(std::string(op) + ": the input has " + num(c) + " channels but the weight " + w.shape().str() +
         " (out, in, kernel...) expects " + num(w.dim(1)) +
         "; make the weight's second dimension the input's channel count (groups = 1 only)");
  }
  if (c == 0 || o == 0) {
    fail(std::string(op) + ": input " + x.shape().str() + " and weight " + w.shape().str() +
         " need at least one input and one output channel");
  }
  if (b.defined() && (b.rank() != 1 || b.dim(0) != o)) {
    fail(std::string(op) + ": bias must have shape (" + num(o) + ") to match the weight's " + num(o) +
         " output channels, got " + describe(b) + " (or pass an undefined Tensor() for no bias)");
  }
  check_positive(op, "kernel size", std::min(kh, kw));
  const bool one_d = std::string(op) == "conv1d";  // (N, C, 1, L): name the one axis it has
  const std::int64_t ho = out_len(op, "height", h, kh, sh, ph, dh);
  const std::int64_t wo = out_len(op, one_d ? "length" : "width", wd, kw, sw, pw, dw);

  const kernels::WindowGeometry g{kh, kw, sh, sw, ph, pw, dh, dw, ho, wo};
  const std::int64_t k = c * kh * kw;
  const Tensor cols = reshape(im2col(x, g), Shape{n * ho * wo, k});     // (N*Ho*Wo, C*kh*kw)
  const Tensor y = linear(cols, reshape(w, Shape{o, k}), b);             // (N*Ho*Wo, O)
  const Tensor per_image = transpose(reshape(y, Shape{n, ho * wo, o}));  // (N, O, Ho*Wo)
  return reshape(per_image, Shape{n, o, ho, wo});
}

struct PoolGeometry {
  std::int64_t ho, wo;
};

PoolGeometry check_pool(const char* op, const Tensor& x, std::int64_t kernel, std::int64_t stride) {
  detail::check_float(op, x);
  if (x.rank() != 4) {
    fail(std::string(op) + ": input must be (N, C, H, W) of rank 4, got " + describe(x) +
         " (tensors have rank <= 4: fold a task dimension into N)");
  }
  check_positive(op, "kernel size", kernel);
  check_positive(op, "stride", stride);
  return {out_len(op, "height", x.dim(2), kernel, stride, 0, 1), out_len(op, "width", x.dim(3), kernel, stride, 0, 1)};
}

// The windows of each channel of x (N, C, H, W) as (N*C, Ho*Wo, kernel*kernel).
Tensor pool_windows(const Tensor& x, std::int64_t kernel, std::int64_t stride, const PoolGeometry& p) {
  const Tensor planes = reshape(x, Shape{x.dim(0) * x.dim(1), 1, x.dim(2), x.dim(3)});
  return im2col(planes, kernels::WindowGeometry{kernel, kernel, stride, stride, 0, 0, 1, 1, p.ho, p.wo});
}

Shape window_columns_shape(const Shape& image, const kernels::WindowGeometry& g) {
  return Shape{image[0], g.out_h * g.out_w, image[1] * g.kh * g.kw};
}

// Checks the geometry against an (N, C, H, W) image shape: positive window, stride and dilation,
// non-negative padding, and out_h / out_w equal to what the image gives.
void check_window(const char* op, const Shape& image, const kernels::WindowGeometry& g) {
  if (image.rank != 4) fail(std::string(op) + ": the image must be (N, C, H, W) of rank 4, got " + image.str());
  check_positive(op, "kernel size", std::min(g.kh, g.kw));
  check_positive(op, "stride", std::min(g.sh, g.sw));
  check_positive(op, "dilation", std::min(g.dh, g.dw));
  if (std::min(g.ph, g.pw) < 0) fail(std::string(op) + ": padding must be >= 0, got " + num(std::min(g.ph, g.pw)));
  const std::int64_t ho = out_len(op, "height", image[2], g.kh, g.sh, g.ph, g.dh);
  const std::int64_t wo = out_len(op, "width", image[3], g.kw, g.sw, g.pw, g.dw);
  if (ho != g.out_h || wo != g.out_w) {
    fail(std::string(op) + ": the geometry says " + num(g.out_h) + " x " + num(g.out_w) + " output positions but " +
         image.str() + " gives " + num(ho) + " x " + num(wo) + " (set out_h and out_w from the image)");
  }
}

}  // namespace

Tensor im2col(const Tensor& x, const kernels::WindowGeometry& g) {
  detail::check_float("im2col", x);
  check_window("im2col", x.shape(), g);
  Tensor cols = detail::empty_as(x, window_columns_shape(x.shape(), g));
  kernels::im2col(x.view(), g, cols.view());
  if (!should_record({&x})) return cols;
  return record("im2col", cols, {x}, [g](const Node& node, const Tensor& grad, const std::vector<bool>&) {
    return std::vector<Tensor>{col2im(grad, g, node.inputs[0].shape())};
  });
}

Tensor col2im(const Tensor& cols, const kernels::WindowGeometry& g, const Shape& image_shape) {
  detail::check_float("col2im", cols);
  check_window("col2im", image_shape, g);
  if (cols.shape() != window_columns_shape(image_shape, g)) {
    fail("col2im: columns " + describe(cols) + " do not match the image " + image_shape.str() + " (expected " +
         window_columns_shape(image_shape, g).str() + ")");
  }
  Tensor image = detail::empty_as(cols, image_shape);
  kernels::col2im(cols.view(), g, image.view());
  if (!should_record({&cols})) return image;
  return record("col2im", image, {cols}, [g](const Node&, const Tensor& grad, const std::vector<bool>&) {
    return std::vector<Tensor>{im2col(grad, g)};
  });
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::int64_t stride, std::int64_t padding,
              std::int64_t dilation) {
  if (x.rank() != 4) {
    fail("conv2d: input must be (N, C, H, W) of rank 4, got " + describe(x) +
         " (tensors have rank <= 4: fold a task dimension into N; for (N, C, L) use conv1d)");
  }
  if (weight.rank() != 4) {
    fail("conv2d: weight must be (out, in, kh, kw) of rank 4, got " + describe(weight));
  }
  return conv2d_impl("conv2d", x, weight, bias, stride, stride, padding, padding, dilation, dilation);
}

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::int64_t stride, std::int64_t padding,
              std::int64_t dilation) {
  if (x.rank() != 3) {
    fail("conv1d: input must be (N, C, L) of rank 3, got " + describe(x) +
         " (tensors have rank <= 4: fold a task dimension into N)");
  }
  if (weight.rank() != 3) {
    fail("conv1d: weight must be (out, in, k) of rank 3, got " + describe(weight));
  }
  const Tensor x4 = reshape(x, Shape{x.dim(0), x.dim(1), 1, x.dim(2)});
  const Tensor w4 = reshape(weight, Shape{weight.dim(0), weight.dim(1), 1, weight.dim(2)});
  const Tensor y = conv2d_impl("conv1d", x4, w4, bias, 1, stride, 0, padding, 1, dilation);
  return reshape(y, Shape{y.dim(0), y.dim(1), y.dim(3)});
}

Tensor max_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride) {
  const PoolGeometry g = check_pool("max_pool2d", x, kernel, stride);
  return reshape(max(pool_windows(x, kernel, stride, g), 2), Shape{x.dim(0), x.dim(1), g.ho, g.wo});
}

Tensor max_pool2d(const Tensor& x, std::int64_t kernel) { return max_pool2d(x, kernel, kernel); }

Tensor avg_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride) {
  const PoolGeometry g = check_pool("avg_pool2d", x, kernel, stride);
  return reshape(mean(pool_windows(x, kernel, stride, g), 2), Shape{x.dim(0), x.dim(1), g.ho, g.wo});
}

Tensor avg_pool2d(const Tensor& x, std::int64_t kernel) { return avg_pool2d(x, kernel, kernel); }

Tensor flatten(const Tensor& x) {
  detail::check_rank("flatten", x, 1, 4, "input");
  std::int64_t rest = 1;
  for (int i = 1; i < x.rank(); ++i) rest *= x.dim(i);
  return reshape(x, Shape{x.dim(0), rest});
}

}  // namespace metatape
