// Fused parameter updates: the differentiable inner step of MAML / Meta-SGD and the Adam / AdamW
// step over flat buffers that nn/ optimizers call. CPU and CUDA (kernels sgd_update*, adam_update).
#pragma once

#include <cstdint>

#include "autograd/tensor.h"

namespace metatape {

// theta - lr * grad as one op (one kernel), differentiable in theta and grad:
// d/dtheta = G, d/dgrad = -lr G, both written with differentiable ops, so the second derivative
// (MAML's Hessian-vector terms flow through grad's own graph) is exact.
Tensor inner_update(const Tensor& theta, const Tensor& grad, double lr);
// theta - lr (.) grad with a learnable rate: lr holds one element (any rank, e.g. () or (1)) or has
// theta's shape (Meta-SGD). Differentiable in theta, grad and lr: d/dlr = sum_to(-grad (.) G, lr).
Tensor inner_update(const Tensor& theta, const Tensor& grad, const Tensor& lr);

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

// One Adam (AdamW) step in place on param, m and v (same numel, dtype and device as grad); step
// counts from 1. Not recorded on the tape: an optimizer update is outside the graph.
void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamConfig& config,
                 std::int64_t step);

}  // namespace metatape
