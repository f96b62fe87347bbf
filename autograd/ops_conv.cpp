// Convolution and pooling, written as compositions of existing differentiable ops, so the first and
// second derivatives (and every higher one) are exact by construction and every backend that runs
// those ops runs these:
//
//   conv2d(x, w, b)  = pad_axis (H, W)  ->  im2col  ->  linear(cols, w as (O, C*kh*kw), b)  ->  (N, O, Ho, Wo)
//   conv1d           = conv2d on (N, C, 1, L) with a (O, C, 1, k) filter
//   max_pool2d       = im2col per channel  ->  max over the window (gradient to its first maximum)
//   avg_pool2d       = im2col per channel  ->  mean over the window
//   flatten          = reshape to (N, rest)
//
// im2col is one index_select on the input viewed as a column (numel, 1), with a precomputed i64
// index: row r of the result is the input element under window position r. Its backward is index_add
// (the scatter adjoint) and index_add's backward is index_select again, so:
//  - backward: d/dx is index_add of (g W) -- the transposed convolution, i.e. conv2d's data gradient;
//    d/dw is g^T cols -- the filter gradient (a correlation of g with x); d/db is g summed.
//  - second derivative: each gradient is linear in g and in the other operand, through the same layout ops
//    and gemms, so its derivative is again a data-gradient and a filter-gradient convolution (the double
//    backward of a convolution is convolutions), recorded exactly. conv2d is linear in x and in w separately;
//    the only second-order terms are the x-w cross terms. Pooling is piecewise linear: max's second derivative
//    is zero almost everywhere (its mask is a constant), mean's is zero.
//
// Cost: the column matrix holds N * Ho * Wo * C * kh * kw elements (kh * kw times the input for stride 1), and
// the i64 index as many again (both are kept for the backward). The existing row gather and scatter move one
// element per row, so they, not the GEMM, dominate: for a Conv-4 middle layer, x (25, 64, 14, 14) f32 with a
// (64, 64, 3, 3) filter and padding 1 (2.8 M column elements), forward took 30-50 ms and the first-order
// backward 25-50 ms on this project's shared 2-core build machine, of which the GEMM is about 5 ms (the rest is
// the element-by-element gather/scatter and the index). Sensible for tests, small images and the temporal
// encoder, slow for Conv-4 at scale; an im2col kernel and cuDNN on CUDA are the next slice of issue 16, and
// this composition stays the exact reference they are tested against. The index is built on the host and copied
// to the input's device on every call; on CUDA that copy (8 bytes per column element) is part of the price
// until a kernel builds the columns in place. No CUDA run yet (no GPU was lent to this slice): the ops used are
// the ones the CUDA backend already runs.
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

// The im2col index over a (N, C, H, W) tensor viewed as a column. Rows are ordered
// (n, [c,] oh, ow, [c,] i, j): with channels_inner the channel index comes right before the window
// offsets (conv: one row of C*kh*kw per output position); otherwise it comes first (pool: one row of
// kh*kw per channel and output position).
Tensor window_index(const Shape& s, std::int64_t kh, std::int64_t kw, std::int64_t sh, std::int64_t sw, std::int64_t dh,
                    std::int64_t dw, std::int64_t ho, std::int64_t wo, bool channels_inner, Device device) {
  const std::int64_t n_ = s[0], c_ = s[1], h_ = s[2], w_ = s[3];
  Tensor index = Tensor::empty(Shape{n_ * c_ * ho * wo * kh * kw}, DType::i64, Device::cpu);
  std::int64_t* out = index.data<std::int64_t>();
  auto window = [&](std::int64_t n, std::int64_t c, std::int64_t oh, std::int64_t ow) {
    const std::int64_t corner = ((n * c_ + c) * h_ + oh * sh) * w_ + ow * sw;
    for (std::int64_t i = 0; i < kh; ++i) {
      const std::int64_t row = corner + i * dh * w_;
      for (std::int64_t j = 0; j < kw; ++j) *out++ = row + j * dw;
    }
  };
  for (std::int64_t n = 0; n < n_; ++n) {
    if (channels_inner) {
      for (std::int64_t oh = 0; oh < ho; ++oh)
        for (std::int64_t ow = 0; ow < wo; ++ow)
          for (std::int64_t c = 0; c < c_; ++c) window(n, c, oh, ow);
    } else {
      for (std::int64_t c = 0; c < c_; ++c)
        for (std::int64_t oh = 0; oh < ho; ++oh)
          for (std::int64_t ow = 0; ow < wo; ++ow) window(n, c, oh, ow);
    }
  }
  return index.to(device);
}

// Gathers the windows of x (N, C, H, W) into (rows, width) through index_select on x as a column.
Tensor gather_windows(const Tensor& x, const Tensor& index, std::int64_t width) {
  const Tensor column = reshape(x, Shape{x.numel(), 1});
  return reshape(index_select(column, index), Shape{index.numel() / width, width});
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

  Tensor padded = x;
  if (ph > 0) padded = pad_axis(padded, Shape{n, c, h + 2 * ph, wd}, 2, ph);
  if (pw > 0) padded = pad_axis(padded, Shape{n, c, h + 2 * ph, wd + 2 * pw}, 3, pw);
  const Tensor index = window_index(padded.shape(), kh, kw, sh, sw, dh, dw, ho, wo, true, x.device());
  const std::int64_t k = c * kh * kw;
  const Tensor cols = gather_windows(padded, index, k);                  // (N*Ho*Wo, C*kh*kw)
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

}  // namespace

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
  const Shape out{x.dim(0), x.dim(1), g.ho, g.wo};
  const Tensor index = window_index(x.shape(), kernel, kernel, stride, stride, 1, 1, g.ho, g.wo, false, x.device());
  return reshape(max(gather_windows(x, index, kernel * kernel), 1), out);
}

Tensor max_pool2d(const Tensor& x, std::int64_t kernel) { return max_pool2d(x, kernel, kernel); }

Tensor avg_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride) {
  const PoolGeometry g = check_pool("avg_pool2d", x, kernel, stride);
  const Shape out{x.dim(0), x.dim(1), g.ho, g.wo};
  const Tensor index = window_index(x.shape(), kernel, kernel, stride, stride, 1, 1, g.ho, g.wo, false, x.device());
  return reshape(mean(gather_windows(x, index, kernel * kernel), 1), out);
}

Tensor avg_pool2d(const Tensor& x, std::int64_t kernel) { return avg_pool2d(x, kernel, kernel); }

Tensor flatten(const Tensor& x) {
  detail::check_rank("flatten", x, 1, 4, "input");
  std::int64_t rest = 1;
  for (int i = 1; i < x.rank(); ++i) rest *= x.dim(i);
  return reshape(x, Shape{x.dim(0), rest});
}

}  // namespace metatape
