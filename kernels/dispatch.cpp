// The one place that picks a backend. Every view of a call must be on one device (copy excepted).
#include <string>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/error.h"
#include "kernels/kernels.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace metatape::kernels {
namespace {

Device common_device(const char* op, std::initializer_list<const View*> views) {
  const Device first = (*views.begin())->device;
  for (const View* v : views) {
    if (v->device != first) {
      fail(std::string(op) + ": inputs on different devices (" + device_name(first) + " and " + device_name(v->device) +
           "); move them with .to(device) first");
    }
  }
  return first;
}

[[noreturn, maybe_unused]] void no_cuda(const char* op) {
  fail(std::string(op) +
       ": a tensor is on CUDA but this build has no CUDA backend (configure with -DMETATAPE_CUDA=ON)");
}

}  // namespace

#ifdef METATAPE_WITH_CUDA
#define METATAPE_ROUTE(op, call, ...) (common_device(op, {__VA_ARGS__}) == Device::cuda ? cuda::call : cpu::call)
#else
#define METATAPE_ROUTE(op, call, ...) (common_device(op, {__VA_ARGS__}) == Device::cuda ? no_cuda(op) : cpu::call)
#endif

void fill(const View& out, double value) { METATAPE_ROUTE("fill", fill(out, value), &out); }

void copy(const View& src, const View& dst) {
  if (src.numel() != dst.numel() || src.dtype != dst.dtype) {
    fail("copy: source " + src.shape.str() + " " + dtype_name(src.dtype) + " and destination " + dst.shape.str() + " " +
         dtype_name(dst.dtype) + " differ");
  }
  if (src.device == Device::cpu && dst.device == Device::cpu) return cpu::copy(src, dst);
#ifdef METATAPE_WITH_CUDA
  cuda::copy(src, dst);
#else
  no_cuda("copy");
#endif
}

void convert(const View& src, const View& dst) { METATAPE_ROUTE("convert", convert(src, dst), &src, &dst); }
void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  METATAPE_ROUTE(unary_op_name(op), unary(op, x, out, alpha, beta), &x, &out);
}
void binary(BinaryOp op, const View& a, const View& b, const View& out) {
  METATAPE_ROUTE(binary_op_name(op), binary(op, a, b, out), &a, &b, &out);
}
void broadcast_to(const View& x, const View& out) { METATAPE_ROUTE("expand", broadcast_to(x, out), &x, &out); }
void where(const View& mask, const View& a, const View& b, const View& out) {
  METATAPE_ROUTE("where", where(mask, a, b, out), &mask, &a, &b, &out);
}
void sum_to(const View& x, const View& out) { METATAPE_ROUTE("sum", sum_to(x, out), &x, &out); }
void max_along(const View& x, int axis, const View& values, const View& indices) {
  METATAPE_ROUTE("max", max_along(x, axis, values, indices), &x, &values, &indices);
}
void softmax(const View& x, const View& out, bool log) {
  METATAPE_ROUTE(log ? "log_softmax" : "softmax", softmax(x, out, log), &x, &out);
}
void cross_entropy(const View& logits, const View& labels, const View& out) {
  METATAPE_ROUTE("cross_entropy", cross_entropy(logits, labels, out), &logits, &labels, &out);
}
void one_hot(const View& labels, const View& out) { METATAPE_ROUTE("one_hot", one_hot(labels, out), &labels, &out); }
void gemm(const View& a, bool trans_a, const View& b, bool trans_b, const View& c, double alpha, double beta) {
  METATAPE_ROUTE("matmul", gemm(a, trans_a, b, trans_b, c, alpha, beta), &a, &b, &c);
}
void pairwise_sqdist(const View& a, const View& b, const View& out) {
  METATAPE_ROUTE("pairwise_sqdist", pairwise_sqdist(a, b, out), &a, &b, &out);
}
void index_select_rows(const View& x, const View& index, const View& out) {
  METATAPE_ROUTE("index_select", index_select_rows(x, index, out), &x, &index, &out);
}
void im2col(const View& x, const WindowGeometry& g, const View& cols) {
  METATAPE_ROUTE("im2col", im2col(x, g, cols), &x, &cols);
}
void col2im(const View& cols, const WindowGeometry& g, const View& x) {
  METATAPE_ROUTE("col2im", col2im(cols, g, x), &cols, &x);
}
void conv2d_forward(const View& x, const View& w, const WindowGeometry& g, const View& y) {
  METATAPE_ROUTE("conv2d", conv2d_forward(x, w, g, y), &x, &w, &y);
}
void conv2d_backward_data(const View& dy, const View& w, const WindowGeometry& g, const View& dx) {
  METATAPE_ROUTE("conv2d_backward_data", conv2d_backward_data(dy, w, g, dx), &dy, &w, &dx);
}
void conv2d_backward_filter(const View& x, const View& dy, const WindowGeometry& g, const View& dw) {
  METATAPE_ROUTE("conv2d_backward_filter", conv2d_backward_filter(x, dy, g, dw), &x, &dy, &dw);
}
void index_add_rows(const View& src, const View& index, const View& out) {
  METATAPE_ROUTE("index_add", index_add_rows(src, index, out), &src, &index, &out);
}
void copy_axis_block(const View& src, std::int64_t src_start, const View& dst, std::int64_t dst_start, int axis,
                     std::int64_t len) {
  METATAPE_ROUTE("copy_axis_block", copy_axis_block(src, src_start, dst, dst_start, axis, len), &src, &dst);
}
void transpose_last2(const View& x, const View& out) { METATAPE_ROUTE("transpose", transpose_last2(x, out), &x, &out); }

namespace {

void check_update_views(const char* op, std::initializer_list<const View*> views) {
  const View& first = **views.begin();
  for (const View* v : views) {
    if (v->numel() != first.numel() || v->dtype != first.dtype) {
      fail(std::string(op) + ": buffers differ: " + first.shape.str() + " " + dtype_name(first.dtype) + " and " +
           v->shape.str() + " " + dtype_name(v->dtype) + " (parameters, gradients and optimizer state must match)");
    }
  }
}

}  // namespace

void sgd_update(const View& theta, const View& grad, double lr, const View& out) {
  check_update_views("sgd_update", {&theta, &grad, &out});
  METATAPE_ROUTE("sgd_update", sgd_update(theta, grad, lr, out), &theta, &grad, &out);
}
void sgd_update_rates(const View& theta, const View& grad, const View& lr, const View& out) {
  check_update_views("sgd_update", {&theta, &grad, &out});
  if (lr.numel() != 1 && lr.numel() != theta.numel()) {
    fail("sgd_update: " + std::to_string(lr.numel()) + " learning rates for " + std::to_string(theta.numel()) +
         " parameters (give one rate or one per parameter)");
  }
  if (lr.dtype != theta.dtype) fail("sgd_update: learning rates must have the parameters' dtype");
  METATAPE_ROUTE("sgd_update", sgd_update_rates(theta, grad, lr, out), &theta, &grad, &lr, &out);
}
void adam_update(const View& param, const View& grad, const View& m, const View& v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, std::int64_t step, bool decoupled) {
  check_update_views("adam_update", {&param, &grad, &m, &v});
  if (step < 1) fail("adam_update: step " + std::to_string(step) + " must be >= 1 (count from 1)");
  METATAPE_ROUTE("adam_update", adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled),
                 &param, &grad, &m, &v);
}

#undef METATAPE_ROUTE

bool cuda_available() {
#ifdef METATAPE_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::affine:
      return "affine";
    case UnaryOp::exp:
      return "exp";
    case UnaryOp::log:
      return "log";
    case UnaryOp::sqrt:
      return "sqrt";
    case UnaryOp::square:
      return "square";
    case UnaryOp::abs:
      return "abs";
    case UnaryOp::sign:
      return "sign";
    case UnaryOp::pow:
      return "pow";
    case UnaryOp::relu:
      return "relu";
    case UnaryOp::leaky_relu:
      return "leaky_relu";
    case UnaryOp::elu:
      return "elu";
    case UnaryOp::tanh:
      return "tanh";
    case UnaryOp::sigmoid:
      return "sigmoid";
    case UnaryOp::softplus:
      return "softplus";
    case UnaryOp::gelu:
      return "gelu";
    case UnaryOp::step:
      return "step";
    case UnaryOp::in_range:
      return "in_range";
    case UnaryOp::clamp:
      return "clamp";
    case UnaryOp::reciprocal:
      return "reciprocal";
  }
  return "unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add:
      return "add";
    case BinaryOp::sub:
      return "sub";
    case BinaryOp::mul:
      return "mul";
    case BinaryOp::div:
      return "div";
    case BinaryOp::maximum:
      return "maximum";
    case BinaryOp::minimum:
      return "minimum";
    case BinaryOp::equal:
      return "equal";
    case BinaryOp::greater:
      return "greater";
  }
  return "binary";
}

}  // namespace metatape::kernels
