#include "nn/losses.h"

#include "autograd/ops.h"
#include "kernels/error.h"

namespace metatape::nn {

Tensor cross_entropy_loss(const Tensor& logits, const Tensor& labels) { return cross_entropy(logits, labels); }

Tensor nll_loss(const Tensor& log_probs, const Tensor& labels) { return nll(log_probs, labels); }

Tensor mse_loss(const Tensor& prediction, const Tensor& target) { return mse(prediction, target); }

Tensor negative_sharpe_loss(const Tensor& scores, const Tensor& returns, double eps) {
  if (scores.rank() != 2 || scores.shape() != returns.shape()) {
    fail("negative_sharpe: scores " + describe(scores) + " and returns " + describe(returns) +
         " must both be (rows, assets)");
  }
  if (scores.dim(0) < 2) {
    fail("negative_sharpe: needs at least 2 rows of returns to estimate a variance, got " +
         std::to_string(scores.dim(0)));
  }
  const Tensor weights = softmax(scores);
  const Tensor r = sum(mul(weights, returns), 1);  // (rows)
  const Tensor m = mean(r);
  const Tensor var = mean(square(sub(r, m)));
  return neg(div(m, sqrt(affine(var, 1.0, eps))));
}

}  // namespace metatape::nn
