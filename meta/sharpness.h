// Sharpness of a task's inner problem: the largest-magnitude eigenvalue of the Hessian of the support
// loss with respect to the model parameters, at given parameters. Plain gradient descent with rate lr
// on a quadratic with curvature lambda multiplies the error along that direction by (1 - lr lambda)
// per step, so lr * lambda_max > 2 at the start of adaptation predicts that repeated inner steps
// overshoot and grow (docs/results/sinusoid.md uses this to explain multi-step divergence).
#pragma once

#include <cstdint>

#include "nn/model.h"
#include "nn/parameters.h"
#include "tasks/task.h"

namespace metatape::meta {

struct Sharpness {
  double lambda_max = 0.0;  // signed: the Rayleigh quotient of the final iterate
  double residual = 0.0;    // |H v - lambda v| / |lambda| for the final unit vector v
  int iterations = 0;
};

// Power iteration on exact Hessian-vector products (double backward through the tape), from a
// seeded random start, until the eigenvalue estimate changes by less than `tolerance` (relative) or
// `max_iterations` products were taken. All of `params` are differentiated (for ANIL pass the head's
// view yourself). Throws when the loss or a product is not finite, naming the iteration.
Sharpness support_sharpness(const nn::Model& model, const nn::ParameterList& params, const tasks::Task& task,
                            int max_iterations = 100, double tolerance = 1e-4, std::uint64_t seed = 1);

}  // namespace metatape::meta
