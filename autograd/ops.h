// Differentiable ops. Each op's forward, backward and the note on its second derivative sit side by
// side in autograd/ops_*.cpp. Every backward is written with these same ops, so gradients of any order
// are exact. Broadcasting follows numpy (ranks aligned on the right); shapes have rank <= 4 and a
// leading dimension may be a task dimension. Mismatches throw naming the op and both shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "kernels/op_kinds.h"

namespace metatape {

// ---- elementwise, broadcasting --------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double slope = 0.01);
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor gelu(const Tensor& x);  // tanh approximation
Tensor clamp(const Tensor& x, double lo, double hi);
// mask: same dtype as a and b, nonzero = take a. The mask is a constant (no gradient).
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);
// Inverted dropout: zeroes each element with probability p and scales the rest by 1 / (1 - p). The
// identity when training is false or p == 0.
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);

// ---- reductions -----------------------------------------------------------------------------------
Tensor sum(const Tensor& x);  // all elements, rank 0
Tensor sum(const Tensor& x, int axis, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int axis, bool keepdim = false);
Tensor max(const Tensor& x, int axis, bool keepdim = false);  // gradient to the first maximum
// Sums x down to `shape` (which must broadcast to x's shape), and its inverse.
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor expand(const Tensor& x, const Shape& shape);

// ---- linear algebra -------------------------------------------------------------------------------
// op(a) op(b) over the last two dims; rank 2 or 3, a rank-2 operand is shared across the batch.
Tensor gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b);
Tensor matmul(const Tensor& a, const Tensor& b);
// x W^T + b as one op. x (rows, in) or (tasks, rows, in); W (out, in) or (tasks, out, in);
// b undefined, or broadcastable to the output: (out) or (tasks, 1, out).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// out[i, j] = |a_i - b_j|^2; a (n, d), b (m, d), or batched (tasks, n, d) and (tasks, m, d).
Tensor pairwise_sqdist(const Tensor& a, const Tensor& b);
// out[i, j] = <a_i, b_j> / (|a_i| |b_j|), each norm computed as sqrt(|v|^2 + eps).
Tensor cosine_similarity(const Tensor& a, const Tensor& b, double eps = 1e-12);

// ---- shape ----------------------------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);  // shares storage
Tensor transpose(const Tensor& x);                    // swaps the last two dims
Tensor concat(const std::vector<Tensor>& parts, int axis);
Tensor slice(const Tensor& x, int axis, std::int64_t start, std::int64_t end);  // [start, end)
Tensor index_select(const Tensor& x, const Tensor& index);                      // rows of axis 0, index i64
// The adjoint of index_select: a tensor of `rows` rows, zero except rows index[r] += src[r].
Tensor index_add(const Tensor& src, const Tensor& index, std::int64_t rows);
// The adjoint of slice: zeros of `full` shape with x placed at [start, start + x.dim(axis)).
Tensor pad_axis(const Tensor& x, const Shape& full, int axis, std::int64_t start);

// ---- convolution and pooling (autograd/ops_conv.cpp) ---------------------------------------------
// conv2d is an op with its own kernels (CPU im2col + GEMM, CUDA cuDNN) whose gradients are the ops
// conv2d_input_grad / conv2d_weight_grad below; the pools are compositions of im2col, max and mean.
// Every derivative order is exact. Tensors have rank <= 4, so there is no
// extra task dimension: conv2d and the pools take (N, C, H, W), conv1d (N, C, L); fold tasks into N.
// groups = 1; stride, padding and dilation apply to every spatial axis alike; no ceil mode.
// Output size per axis: (in + 2 * padding - dilation * (k - 1) - 1) / stride + 1.
// x (N, C, H, W), weight (O, C, kh, kw), bias (O) or undefined -> (N, O, Ho, Wo). Cross-correlation,
// as in PyTorch.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::int64_t stride = 1,
              std::int64_t padding = 0, std::int64_t dilation = 1);
// x (N, C, L), weight (O, C, k), bias (O) or undefined -> (N, O, Lo). A causal conv1d is
// conv1d(pad_axis(x, (N, C, L + dilation * (k - 1)), 2, dilation * (k - 1)), w, b, 1, 0, dilation).
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::int64_t stride = 1,
              std::int64_t padding = 0, std::int64_t dilation = 1);
// The layout pair under conv and pool (kernels/op_kinds.h, WindowGeometry): im2col gathers the windows
// of x (N, C, H, W) into (N, out_h * out_w, C * kh * kw), reading padding as 0; col2im is its adjoint
// (each image element = the sum of the column entries that read it). Both are linear and each is the
// other's backward. Throws when g's out_h / out_w do not follow from the image shape.
Tensor im2col(const Tensor& x, const kernels::WindowGeometry& g);
Tensor col2im(const Tensor& cols, const kernels::WindowGeometry& g, const Shape& image_shape);
// conv2d's gradients as ops of their own (what its backward records; PyTorch's
// torch.nn.grad.conv2d_input / conv2d_weight): the data gradient (the transposed convolution of dy
// (N, O, out_h, out_w) with weight (O, C, kh, kw)) to x_shape (N, C, H, W), and the filter gradient to
// w_shape. g is the convolution's geometry (stride, padding, dilation, out_h / out_w of x_shape).
// Differentiable at every order (autograd/ops_conv.cpp).
Tensor conv2d_input_grad(const Tensor& dy, const Tensor& weight, const kernels::WindowGeometry& g, const Shape& x_shape);
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, const kernels::WindowGeometry& g, const Shape& w_shape);
// Square kernel x kernel windows, no padding; stride defaults to the kernel. max_pool2d sends the
// gradient to each window's first maximum.
Tensor max_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride);
Tensor max_pool2d(const Tensor& x, std::int64_t kernel);
Tensor avg_pool2d(const Tensor& x, std::int64_t kernel, std::int64_t stride);
Tensor avg_pool2d(const Tensor& x, std::int64_t kernel);
// (d0, d1, ...) -> (d0, d1 * d2 * ...): keeps the leading (batch) dimension; shares storage.
Tensor flatten(const Tensor& x);

// ---- normalisation (autograd/ops_norm.cpp) --------------------------------------------------------
// Running statistics of batch_norm: per-channel mean and unbiased variance, updated in place by
// batch_norm in training mode as running = (1 - momentum) running + momentum batch (PyTorch's rule).
// MAML++'s per-step statistics are one BatchNormStats per inner step, chosen by the caller.
struct BatchNormStats {
  Tensor mean, var;
  double momentum = 0.1;
  static BatchNormStats make(std::int64_t channels, DType dtype = DType::f32, Device device = Device::cpu,
                             double momentum = 0.1);  // mean 0, var 1
};
// x (N, C) or (N, C, H, W); weight and bias (C) or undefined. training: per channel, the batch's mean
// and biased variance over every axis but 1 (part of the graph: MAML differentiates through them;
// MAML's evaluation is also in this mode, "transductive"); `running`, when given, is updated (not
// recorded). training = false: the running statistics, as constants (running is then required).
// y = (x - mean) / sqrt(var + eps) * weight + bias.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, bool training = true,
                  BatchNormStats* running = nullptr, double eps = 1e-5);
// Over the last axis: (x - mean) / sqrt(biased var + eps) * weight + bias; weight, bias (features) or
// undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// ---- softmax and losses (the class axis is the last one) ------------------------------------------
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
// Mean over rows of -log softmax(logits)[label]; logits (rows, classes), labels i64 (rows). One fused
// op: its backward (softmax - one_hot) / rows is written with differentiable ops.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);
// Mean over rows of -log_probs[row, label].
Tensor nll(const Tensor& log_probs, const Tensor& labels);
Tensor mse(const Tensor& prediction, const Tensor& target);

// ---- not differentiable ---------------------------------------------------------------------------
Tensor one_hot(const Tensor& labels, std::int64_t classes, DType dtype = DType::f32);
Tensor argmax(const Tensor& x, int axis);          // i64
Tensor greater(const Tensor& a, const Tensor& b);  // 1 where a > b, else 0 (dtype of a)

}  // namespace metatape
