// Normalisation layers as compositions of differentiable ops (sum_to, sub, mul, pow), so every
// derivative order is exact; the statistics are part of the graph, as MAML differentiates through
// them. Second derivative: batch_norm and layer_norm are smooth in x, weight and bias (the only
// non-polynomial piece is (var + eps)^(-1/2), a pow whose own derivatives are recorded), so their
// Hessian terms come from the same ops' double backward.
#include <string>

#include "autograd/op_support.h"
#include "autograd/ops.h"
#include "autograd/tape.h"

namespace metatape {
namespace {

// (x - mean) / sqrt(var + eps) with mean and the biased variance taken by sum_to over the axes that
// `stat` (x's shape with 1 on every reduced axis) broadcasts, and the normalised x returned with the
// batch statistics (mean, biased var, both `stat`-shaped).
struct Normalised {
  Tensor y, mean, var;
};

Normalised normalise(const Tensor& x, const Shape& stat, double eps) {
  const double count = static_cast<double>(x.numel() / stat.numel());
  const Tensor mu = affine(sum_to(x, stat), 1.0 / count, 0.0);
  const Tensor centred = sub(x, mu);
  const Tensor var = affine(sum_to(square(centred), stat), 1.0 / count, 0.0);
  return {mul(centred, pow(affine(var, 1.0, eps), -0.5)), mu, var};
}

// y * weight + bias with both reshaped to `stat` (undefined ones skipped).
Tensor scale_shift(Tensor y, const Tensor& weight, const Tensor& bias, const Shape& stat) {
  if (weight.defined()) y = mul(y, reshape(weight, stat));
  if (bias.defined()) y = add(y, reshape(bias, stat));
  return y;
}

void check_affine(const char* op, const Tensor& x, const Tensor& p, const char* role, std::int64_t size,
                  const char* what) {
  if (!p.defined()) return;
  detail::check_same_dtype(op, x, p);
  if (p.rank() != 1 || p.dim(0) != size) {
    fail(std::string(op) + ": " + role + " must have shape (" + std::to_string(size) + "), one per " + what +
         ", got " + describe(p) + " (or pass an undefined Tensor())");
  }
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, bool training, BatchNormStats* running,
                  double eps) {
  const char* op = "batch_norm";
  detail::check_float(op, x);
  if (x.rank() != 2 && x.rank() != 4) {
    fail("batch_norm: input must be (N, C) or (N, C, H, W), got " + describe(x) +
         " (fold a task dimension into N: statistics are per channel over every other axis)");
  }
  const std::int64_t channels = x.dim(1);
  check_affine(op, x, weight, "weight", channels, "channel");
  check_affine(op, x, bias, "bias", channels, "channel");
  if (!(eps > 0.0)) fail("batch_norm: eps must be > 0, got " + std::to_string(eps));
  const Shape stat = x.rank() == 4 ? Shape{1, channels, 1, 1} : Shape{1, channels};
  if (running != nullptr) {
    for (const Tensor* t : {&running->mean, &running->var}) {
      if (!t->defined() || t->numel() != channels || t->dtype() != x.dtype() || t->device() != x.device()) {
        fail("batch_norm: running statistics must be " + std::to_string(channels) + " values of " + describe(x) +
             "'s dtype and device, got " + (t->defined() ? describe(*t) : std::string("an undefined tensor")) +
             " (start them with BatchNormStats::make)");
      }
    }
    if (!(running->momentum >= 0.0 && running->momentum <= 1.0)) {
      fail("batch_norm: momentum must be in [0, 1], got " + std::to_string(running->momentum));
    }
  }
  if (!training) {
    if (running == nullptr) {
      fail("batch_norm: evaluation mode (training = false) needs running statistics; pass them, or use batch "
           "statistics with training = true (transductive, as MAML evaluates)");
    }
    const Tensor scale = pow(affine(reshape(running->var, stat), 1.0, eps), -0.5);
    return scale_shift(mul(sub(x, reshape(running->mean, stat)), scale), weight, bias, stat);
  }
  const double count = static_cast<double>(x.numel() / channels);
  if (count < 1.0) fail("batch_norm: " + describe(x) + " has no values per channel to take statistics over");
  const Normalised n = normalise(x, stat, eps);
  if (running != nullptr) {
    NoGradGuard off;  // the running statistics are state, not part of the graph
    const double m = running->momentum;
    const double unbiased = count > 1.0 ? count / (count - 1.0) : 1.0;
    running->mean = add(affine(running->mean, 1.0 - m, 0.0), affine(reshape(n.mean.detach(), Shape{channels}), m, 0.0));
    running->var = add(affine(running->var, 1.0 - m, 0.0),
                       affine(reshape(n.var.detach(), Shape{channels}), m * unbiased, 0.0));
  }
  return scale_shift(n.y, weight, bias, stat);
}

BatchNormStats BatchNormStats::make(std::int64_t channels, DType dtype, Device device, double momentum) {
  return {Tensor::zeros(Shape{channels}, dtype, device), Tensor::ones(Shape{channels}, dtype, device), momentum};
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layer_norm";
  detail::check_float(op, x);
  detail::check_rank(op, x, 1, 4, "input");
  const std::int64_t features = x.dim(-1);
  if (features == 0) fail("layer_norm: " + describe(x) + " has no features to normalise over");
  check_affine(op, x, weight, "weight", features, "feature (the last axis)");
  check_affine(op, x, bias, "bias", features, "feature (the last axis)");
  if (!(eps > 0.0)) fail("layer_norm: eps must be > 0, got " + std::to_string(eps));
  Shape stat = x.shape();
  stat[x.rank() - 1] = 1;
  const Normalised n = normalise(x, stat, eps);
  Shape affine_shape = Shape::of_rank(x.rank());
  for (int i = 0; i < x.rank(); ++i) affine_shape[i] = 1;
  affine_shape[x.rank() - 1] = features;
  return scale_shift(n.y, weight, bias, affine_shape);
}

}  // namespace metatape
