// Losses. Each returns a rank-0 tensor and is differentiable to any order (autograd/ops.h).
#pragma once

#include "autograd/tensor.h"

namespace metatape::nn {

// Mean over rows; logits (rows, classes), labels i64 (rows).
Tensor cross_entropy_loss(const Tensor& logits, const Tensor& labels);
// Mean over rows of -log_probs[row, label].
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels);
// Mean of squared differences.
Tensor mse_loss(const Tensor& prediction, const Tensor& target);
// Portfolio: scores (rows, assets) are turned into weights by softmax over assets (long-only, fully
// invested); returns (rows, assets) are realised next-period asset returns. The loss is
// -mean(r) / sqrt(var(r) + eps) of the per-row portfolio returns r = sum(weights * returns, axis 1)
// (population variance, eps = 1e-8). Needs at least 2 rows.
Tensor negative_sharpe_loss(const Tensor& scores, const Tensor& returns, double eps = 1e-8);

}  // namespace metatape::nn
