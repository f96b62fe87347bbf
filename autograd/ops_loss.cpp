// Softmax family and losses, over the last axis.
// softmax: dx = y * (g - sum(g y)); log_softmax: dx = g - softmax(x) * sum(g). Both are written with
// differentiable ops of the output, so their second derivatives are exact.
#include "autograd/op_support.h"
#include "autograd/ops.h"

namespace metatape {

Tensor softmax(const Tensor& x) {
  detail::check_float("softmax", x);
  detail::check_rank("softmax", x, 1, 4, "input");
  Tensor y = detail::empty_like(x);
  kernels::softmax(x.view(), y.view(), false);
  if (!should_record({&x})) return y;
  return record("softmax", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    const Tensor& y = n.output;
    return std::vector<Tensor>{mul(y, sub(g, sum(mul(g, y), -1, true)))};
  });
}

Tensor log_softmax(const Tensor& x) {
  detail::check_float("log_softmax", x);
  detail::check_rank("log_softmax", x, 1, 4, "input");
  Tensor y = detail::empty_like(x);
  kernels::softmax(x.view(), y.view(), true);
  if (!should_record({&x})) return y;
  return record("log_softmax", y, {x}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{sub(g, mul(exp(n.output), sum(g, -1, true)))};
  });
}

// d/dlogits = g (softmax(logits) - one_hot) / rows; softmax is recorded under create_graph.
Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  detail::check_float("cross_entropy", logits);
  detail::check_rank("cross_entropy", logits, 2, 2, "logits");
  detail::check_labels("cross_entropy", logits, labels);
  if (logits.dim(0) == 0) fail("cross_entropy: " + describe(logits) + " has no rows");
  Tensor loss = Tensor::empty(Shape{}, logits.dtype(), logits.device());
  kernels::cross_entropy(logits.view(), labels.view(), loss.view());
  if (!should_record({&logits})) return loss;
  const Tensor target = one_hot(labels, logits.dim(1), logits.dtype());
  return record("cross_entropy", loss, {logits}, [target](const Node& n, const Tensor& g, const std::vector<bool>&) {
    const Tensor& z = n.inputs[0];
    const double inv_rows = 1.0 / static_cast<double>(z.dim(0));
    return std::vector<Tensor>{mul(affine(sub(softmax(z), target), inv_rows, 0.0), g)};
  });
}

Tensor nll(const Tensor& log_probs, const Tensor& labels) {
  detail::check_float("nll", log_probs);
  detail::check_rank("nll", log_probs, 2, 2, "log_probs");
  detail::check_labels("nll", log_probs, labels);
  if (log_probs.dim(0) == 0) fail("nll: " + describe(log_probs) + " has no rows");
  const Tensor target = one_hot(labels, log_probs.dim(1), log_probs.dtype());
  return affine(sum(mul(log_probs, target)), -1.0 / static_cast<double>(log_probs.dim(0)), 0.0);
}

Tensor mse(const Tensor& prediction, const Tensor& target) {
  if (prediction.shape() != target.shape()) {
    fail("mse: prediction " + describe(prediction) + " and target " + describe(target) + " must have the same shape");
  }
  return mean(square(sub(prediction, target)));
}

Tensor one_hot(const Tensor& labels, std::int64_t classes, DType dtype) {
  if (labels.dtype() != DType::i64 || labels.rank() != 1) {
    fail("one_hot: labels must be a rank-1 i64 tensor, got " + describe(labels));
  }
  Tensor out = Tensor::empty(Shape{labels.dim(0), classes}, dtype, labels.device());
  kernels::one_hot(labels.view(), out.view());
  return out;
}

}  // namespace metatape
