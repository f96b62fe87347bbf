// Finite-difference checks of first and second derivatives, in f64.
//
// gradcheck: with a fixed random weighting w, compares grad(sum(w * f(x)), x) against central
// differences. gradgradcheck: with a fixed random direction v, checks the derivative of
// G(x) = sum_j <grad(sum(w * f(x)), x_j; create_graph), v_j> the same way, which exercises every
// recorded backward (the second derivative of f, and the mixed terms).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace metatape {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-7;  // pass when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  std::uint64_t seed = 7;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;  // |a - n| / max(|n|, 1e-12), over elements above atol
  std::string message;         // the worst element, when not ok
};

using DifferentiableFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs must be f64 CPU tensors; those requiring grad are checked.
GradcheckResult gradcheck(const DifferentiableFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});
GradcheckResult gradgradcheck(const DifferentiableFn& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options = {});

}  // namespace metatape
