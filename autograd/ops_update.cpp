// The fused inner update and Adam. inner_update's backward: G to theta, -lr G to grad, and
// sum_to(-grad G, lr.shape) to a tensor rate, all differentiable ops of G and the saved inputs, so
// grad-of-grad through a MAML inner loop is exact (no extra derivative rule is needed).
#include "autograd/update_ops.h"

#include "autograd/op_support.h"
#include "autograd/ops.h"
#include "autograd/tape.h"

namespace metatape {
namespace {

void check_update(const char* op, const Tensor& theta, const Tensor& grad) {
  detail::check_same_dtype(op, theta, grad);
  if (theta.shape() != grad.shape()) {
    fail(std::string(op) + ": parameter " + describe(theta) + " and gradient " + describe(grad) +
         " need the same shape");
  }
  if (theta.device() != grad.device()) {
    fail(std::string(op) + ": parameter " + describe(theta) + " is on " + kernels::device_name(theta.device()) +
         " but its gradient is on " + kernels::device_name(grad.device()) + "; move one with .to(device)");
  }
}

}  // namespace

Tensor inner_update(const Tensor& theta, const Tensor& grad, double lr) {
  check_update("inner_update", theta, grad);
  Tensor out = detail::empty_like(theta);
  kernels::sgd_update(theta.view(), grad.view(), lr, out.view());
  if (!should_record({&theta, &grad})) return out;
  return record("inner_update", out, {theta, grad}, [lr](const Node&, const Tensor& g, const std::vector<bool>& needs) {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = g;
    if (needs[1]) r[1] = affine(g, -lr, 0.0);
    return r;
  });
}

Tensor inner_update(const Tensor& theta, const Tensor& grad, const Tensor& lr) {
  check_update("inner_update", theta, grad);
  detail::check_same_dtype("inner_update", theta, lr);
  if (lr.numel() != 1 && lr.shape() != theta.shape()) {
    fail("inner_update: learning rates " + describe(lr) + " must be one element or match the " + "parameter " +
         describe(theta) + " (Meta-SGD: one rate per parameter)");
  }
  if (lr.device() != theta.device()) {
    fail("inner_update: learning rates " + describe(lr) + " and parameter " + describe(theta) +
         " are on different devices; move one with .to(device)");
  }
  Tensor out = detail::empty_like(theta);
  kernels::sgd_update_rates(theta.view(), grad.view(), lr.view(), out.view());
  if (!should_record({&theta, &grad, &lr})) return out;
  return record("inner_update", out, {theta, grad, lr},
                [](const Node& n, const Tensor& g, const std::vector<bool>& needs) {
                  const Tensor& grad = n.inputs[1];
                  const Tensor& lr = n.inputs[2];
                  std::vector<Tensor> r(3);
                  if (needs[0]) r[0] = g;
                  if (needs[1]) r[1] = neg(mul(lr, g));
                  if (needs[2]) r[2] = sum_to(neg(mul(grad, g)), lr.shape());
                  return r;
                });
}

void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamConfig& config,
                 std::int64_t step) {
  for (const Tensor* t : {&grad, &m, &v}) {
    if (t->shape() != param.shape() || t->dtype() != param.dtype() || t->device() != param.device()) {
      fail("adam_update: " + describe(*t) + " does not match the parameter " + describe(param) +
           " (gradient and optimizer state need its shape, dtype and device)");
    }
  }
  detail::check_float("adam_update", param);
  kernels::adam_update(param.view(), grad.view(), m.view(), v.view(), config.lr, config.beta1, config.beta2, config.eps,
                       config.weight_decay, step, config.decoupled_weight_decay);
}

}  // namespace metatape
