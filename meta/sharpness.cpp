#include "meta/sharpness.h"

#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learner.h"

namespace metatape::meta {
namespace {

double dot(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double total = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) total += sum(mul(a[i], b[i])).item();
  return total;
}

void scale(std::vector<Tensor>& v, double factor) {
  for (auto& t : v) t = affine(t, factor, 0.0);
}

}  // namespace

Sharpness support_sharpness(const nn::Model& model, const nn::ParameterList& params, const tasks::Task& task,
                            int max_iterations, double tolerance, std::uint64_t seed) {
  if (params.empty()) fail("support_sharpness: the parameter list is empty");
  if (max_iterations < 1) fail("support_sharpness: max_iterations must be >= 1, got " + std::to_string(max_iterations));
  Generator gen(seed);
  std::vector<Tensor> v;
  {
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < params.size(); ++i) {
      v.push_back(Tensor::normal(params[i].shape(), 0.0, 1.0, gen, params[i].dtype(), params[i].device()));
    }
    scale(v, 1.0 / std::sqrt(dot(v, v)));
  }
  TapeScope scope;
  std::vector<Tensor> leaves;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Tensor leaf = params[i].detach();
    leaf.requires_grad_();
    leaves.push_back(leaf);
  }
  const Tensor loss = task_loss(task, model.forward(params.with_tensors(leaves), task.support_x), task.support_y);
  if (!std::isfinite(loss.item())) fail("support_sharpness: the support loss is not finite at the given parameters");
  GradOptions first;
  first.create_graph = true;
  const std::vector<Tensor> g = grad({loss}, leaves, first);

  Sharpness s;
  double previous = 0.0;
  for (int it = 1; it <= max_iterations; ++it) {
    GradOptions again;
    again.retain_graph = true;
    again.allow_unused = true;
    std::vector<Tensor> hv = grad(g, leaves, again, v);  // H v: d(g . v)/d theta
    NoGradGuard no_grad;
    const double lambda = dot(v, hv);
    const double norm = std::sqrt(dot(hv, hv));
    if (!std::isfinite(lambda) || !std::isfinite(norm)) {
      fail("support_sharpness: a Hessian-vector product is not finite at iteration " + std::to_string(it));
    }
    s.lambda_max = lambda;
    s.iterations = it;
    double r2 = 0.0;  // |H v - lambda v|^2
    for (std::size_t i = 0; i < v.size(); ++i) r2 += sum(square(sub(hv[i], affine(v[i], lambda, 0.0)))).item();
    s.residual = lambda != 0.0 ? std::sqrt(r2) / std::abs(lambda) : std::sqrt(r2);
    if (norm == 0.0) break;  // v lies in the null space: lambda is 0
    if (it > 1 && std::abs(lambda - previous) <= tolerance * std::abs(lambda)) break;
    previous = lambda;
    v = hv;
    scale(v, 1.0 / norm);
  }
  return s;
}

}  // namespace metatape::meta
