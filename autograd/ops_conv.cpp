// Convolution and pooling. conv2d is three ops that are each other's derivatives, each with its own
// kernel (kernels/op_list.inc: CPU im2col + Eigen GEMM, CUDA cuDNN):
//
//   conv(x, w)                 y  = x * w                       (cross-correlation, as PyTorch)
//   conv2d_input_grad(dy, w)   dx = the transposed convolution  (the data gradient of conv)
//   conv2d_weight_grad(x, dy)  dw = sum over images and positions of dy x-windows (the filter gradient)
//
// All three are bilinear, and with <a, b> the elementwise inner product,
//   <dy, conv(x, w)> = <conv2d_input_grad(dy, w), x> = <conv2d_weight_grad(x, dy), w>,
// so the backward of each is again the three: conv's is (input_grad(G, w), weight_grad(x, G));
// input_grad(dy, w)'s is (conv(G, w), weight_grad(G, dy)); weight_grad(x, dy)'s is (input_grad(dy, G),
// conv(x, G)). Every derivative order is exact and the double backward of a convolution is
// convolutions, as issue 16 asks. Only the x-w cross terms are second order (each op is linear in
// each argument). The bias is a broadcast add. conv1d is conv2d on (N, C, 1, L).
//
// Pooling is a composition around the layout pair im2col / col2im (kernels/op_kinds.h, WindowGeometry),
// which are linear and each other's adjoint (im2col's backward is col2im of the gradient and col2im's
// is im2col):
//   max_pool2d = im2col of x viewed as (N*C, 1, H, W)  ->  max over the window (gradient to its first maximum)
//   avg_pool2d = the same  ->  mean over the window
//   flatten    = reshape to (N, rest)
// Pooling is piecewise linear: max's second derivative is zero almost everywhere (its mask is a
// constant), mean's is zero.
//
// History, measured by bench/autograd_cpu.cpp (BM_Conv2dConv4Layer, a Conv-4 middle layer): conv was
// first an i64 index with one-element index_select / index_add (62 ms forward on the loaded
// development machine), then im2col + linear + transpose as tape ops (22 ms); the kernels above are
// the third form. tests/autograd/conv_test.cpp checks conv2d against the im2col + linear composition.
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

Tensor conv_op(const Tensor& x, const Tensor& w, const kernels::WindowGeometry& g);
Tensor weight_grad_op(const Tensor& x, const Tensor& dy, const kernels::WindowGeometry& g, const Shape& w_shape);

// conv2d_input_grad / conv2d_weight_grad without their argument checks (the callers made the shapes).
Tensor input_grad_op(const Tensor& dy, const Tensor& w, const kernels::WindowGeometry& g, const Shape& x_shape) {
  Tensor dx = detail::empty_as(dy, x_shape);
  kernels::conv2d_backward_data(dy.view(), w.view(), g, dx.view());
  if (!should_record({&dy, &w})) return dx;
  return record("conv2d_input_grad", dx, {dy, w}, [g](const Node& n, const Tensor& grad, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = conv_op(grad, n.inputs[1], g);
    if (needs[1]) r[1] = weight_grad_op(grad, n.inputs[0], g, n.inputs[1].shape());
    return r;
  });
}

Tensor weight_grad_op(const Tensor& x, const Tensor& dy, const kernels::WindowGeometry& g, const Shape& w_shape) {
  Tensor dw = detail::empty_as(x, w_shape);
  kernels::conv2d_backward_filter(x.view(), dy.view(), g, dw.view());
  if (!should_record({&x, &dy})) return dw;
  return record("conv2d_weight_grad", dw, {x, dy}, [g](const Node& n, const Tensor& grad, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = input_grad_op(n.inputs[1], grad, g, n.inputs[0].shape());
    if (needs[1]) r[1] = conv_op(n.inputs[0], grad, g);
    return r;
  });
}

Tensor conv_op(const Tensor& x, const Tensor& w, const kernels::WindowGeometry& g) {
  Tensor y = detail::empty_as(x, Shape{x.dim(0), w.dim(0), g.out_h, g.out_w});
  kernels::conv2d_forward(x.view(), w.view(), g, y.view());
  if (!should_record({&x, &w})) return y;
  return record("conv2d", y, {x, w}, [g](const Node& n, const Tensor& grad, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = input_grad_op(grad, n.inputs[1], g, n.inputs[0].shape());
    if (needs[1]) r[1] = weight_grad_op(n.inputs[0], grad, g, n.inputs[1].shape());
    return r;
  });
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
  const std::int64_t c = x.dim(1), h = x.dim(2), wd = x.dim(3);
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
  const Tensor y = conv_op(x, w, g);
  return b.defined() ? add(y, reshape(b, Shape{1, o, 1, 1})) : y;
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

// The shapes of a convolution's gradient ops: x (N, C, H, W), w (O, C, kh, kw) with kh, kw = g's window,
// dy (N, O, out_h, out_w), and g consistent with x.
void check_conv_grad_shapes(const char* op, const Shape& x, const Shape& w, const Shape& dy,
                            const kernels::WindowGeometry& g) {
  check_window(op, x, g);
  if (w.rank != 4 || w[1] != x[1] || w[2] != g.kh || w[3] != g.kw) {
    fail(std::string(op) + ": weight " + w.str() + " must be (out, " + num(x[1]) + ", " + num(g.kh) + ", " + num(g.kw) +
         ") for the image " + x.str() + " and the geometry's window");
  }
  const Shape want{x[0], w[0], g.out_h, g.out_w};
  if (dy != want) fail(std::string(op) + ": the output gradient is " + dy.str() + ", expected " + want.str());
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

Tensor conv2d_input_grad(const Tensor& dy, const Tensor& weight, const kernels::WindowGeometry& g, const Shape& x_shape) {
  check_conv_grad_shapes("conv2d_input_grad", x_shape, weight.shape(), dy.shape(), g);
  detail::check_same_dtype("conv2d_input_grad", dy, weight);
  return input_grad_op(dy, weight, g, x_shape);
}

Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, const kernels::WindowGeometry& g, const Shape& w_shape) {
  check_conv_grad_shapes("conv2d_weight_grad", x.shape(), w_shape, dy.shape(), g);
  detail::check_same_dtype("conv2d_weight_grad", x, dy);
  return weight_grad_op(x, dy, g, w_shape);
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
