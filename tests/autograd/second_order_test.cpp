// Second order at the scale MAML needs: Hessian-vector products of a small MLP loss against finite
// differences of its gradient, and a two-step MAML meta-gradient against finite differences of the
// whole meta-objective, both in f64 with relative error <= 1e-6.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"

using namespace metatape;

namespace {

struct TinyMlp {
  std::vector<Tensor> params;  // w1 (h, in), b1 (h), w2 (out, h), b2 (out)
};

TinyMlp make_mlp(std::int64_t in, std::int64_t hidden, std::int64_t out, Generator& gen) {
  const double s1 = 1.0 / std::sqrt(static_cast<double>(in));
  const double s2 = 1.0 / std::sqrt(static_cast<double>(hidden));
  TinyMlp m;
  m.params = {Tensor::uniform(Shape{hidden, in}, -s1, s1, gen, DType::f64).set_name("w1"),
              Tensor::uniform(Shape{hidden}, -s1, s1, gen, DType::f64).set_name("b1"),
              Tensor::uniform(Shape{out, hidden}, -s2, s2, gen, DType::f64).set_name("w2"),
              Tensor::uniform(Shape{out}, -s2, s2, gen, DType::f64).set_name("b2")};
  for (Tensor& p : m.params) p.requires_grad_();
  return m;
}

Tensor forward(const std::vector<Tensor>& p, const Tensor& x) {
  return linear(tanh(linear(x, p[0], p[1])), p[2], p[3]);
}

Tensor regression_loss(const std::vector<Tensor>& p, const Tensor& x, const Tensor& y) { return mse(forward(p, x), y); }

double relative_error(const std::vector<double>& analytic, const std::vector<double>& numeric) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    diff = std::max(diff, std::abs(analytic[i] - numeric[i]));
    scale = std::max(scale, std::abs(numeric[i]));
  }
  return diff / std::max(scale, 1e-300);
}

std::vector<double> flatten(const std::vector<Tensor>& ts) {
  std::vector<double> out;
  for (const Tensor& t : ts) {
    const auto v = t.to_vector<double>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// p + s * v, as fresh leaves requiring grad.
std::vector<Tensor> shifted(const std::vector<Tensor>& p, const std::vector<Tensor>& v, double s) {
  NoGradGuard off;
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < p.size(); ++i) {
    Tensor t = add(p[i].detach(), affine(v[i], s, 0.0)).copy();
    t.requires_grad_();
    out.push_back(t);
  }
  return out;
}

}  // namespace

TEST_CASE("Hessian-vector products of an MLP loss match finite differences of its gradient") {
  Generator gen(17);
  TinyMlp m = make_mlp(3, 6, 2, gen);
  const Tensor x = Tensor::uniform(Shape{8, 3}, -1, 1, gen, DType::f64);
  const Tensor y = Tensor::uniform(Shape{8, 2}, -1, 1, gen, DType::f64);
  std::vector<Tensor> v;
  for (const Tensor& p : m.params) v.push_back(Tensor::uniform(p.shape(), -1, 1, gen, DType::f64));

  GradOptions create;
  create.create_graph = true;
  const auto g = grad({regression_loss(m.params, x, y)}, m.params, create);
  Tensor gv = Tensor::scalar(0.0, DType::f64);
  for (std::size_t i = 0; i < g.size(); ++i) gv = add(gv, sum(mul(g[i], v[i])));
  const std::vector<double> hvp = flatten(grad({gv}, m.params));

  const double eps = 1e-5;
  const auto plus = shifted(m.params, v, eps);
  const auto minus = shifted(m.params, v, -eps);
  const auto gp = flatten(grad({regression_loss(plus, x, y)}, plus));
  const auto gm = flatten(grad({regression_loss(minus, x, y)}, minus));
  std::vector<double> numeric(gp.size());
  for (std::size_t i = 0; i < gp.size(); ++i) numeric[i] = (gp[i] - gm[i]) / (2 * eps);
  const double err = relative_error(hvp, numeric);
  MESSAGE("HVP relative error " << err);
  CHECK(err <= 1e-6);
}

TEST_CASE("two-step MAML meta-gradient matches finite differences of the meta-objective") {
  Generator gen(5);
  TinyMlp m = make_mlp(2, 5, 1, gen);
  const Tensor xs = Tensor::uniform(Shape{6, 2}, -1, 1, gen, DType::f64);
  const Tensor ys = Tensor::uniform(Shape{6, 1}, -1, 1, gen, DType::f64);
  const Tensor xq = Tensor::uniform(Shape{7, 2}, -1, 1, gen, DType::f64);
  const Tensor yq = Tensor::uniform(Shape{7, 1}, -1, 1, gen, DType::f64);
  const double inner_lr = 0.3;

  // Query loss after two SGD steps on the support loss, differentiable in the initial parameters.
  auto meta_objective = [&](const std::vector<Tensor>& theta, bool create_graph) {
    std::vector<Tensor> phi = theta;
    for (int step = 0; step < 2; ++step) {
      GradOptions opts;
      opts.create_graph = create_graph;
      const auto g = grad({regression_loss(phi, xs, ys)}, phi, opts);
      std::vector<Tensor> next;
      for (std::size_t i = 0; i < phi.size(); ++i) next.push_back(sub(phi[i], affine(g[i], inner_lr, 0.0)));
      phi = next;
      if (!create_graph) {
        for (Tensor& p : phi) p = p.detach().requires_grad_();
      }
    }
    return regression_loss(phi, xq, yq);
  };

  const std::vector<double> analytic = flatten(grad({meta_objective(m.params, true)}, m.params));

  std::vector<double> numeric;
  const double eps = 1e-5;
  for (std::size_t k = 0; k < m.params.size(); ++k) {
    for (std::int64_t i = 0; i < m.params[k].numel(); ++i) {
      auto probe = [&](double delta) {
        std::vector<Tensor> theta;
        for (const Tensor& p : m.params) theta.push_back(p.detach().copy().requires_grad_());
        theta[k].data<double>()[i] += delta;
        return meta_objective(theta, false).item();
      };
      numeric.push_back((probe(eps) - probe(-eps)) / (2 * eps));
    }
  }
  const double err = relative_error(analytic, numeric);
  MESSAGE("two-step MAML meta-gradient relative error " << err);
  CHECK(err <= 1e-6);

  // The first-order approximation differs measurably: the test above is sensitive to second order.
  std::vector<Tensor> phi = m.params;
  for (int step = 0; step < 2; ++step) {
    const auto g = grad({regression_loss(phi, xs, ys)}, phi);
    std::vector<Tensor> next;
    for (std::size_t i = 0; i < phi.size(); ++i) {
      next.push_back(sub(phi[i].detach(), affine(g[i], inner_lr, 0.0)).requires_grad_());
    }
    phi = next;
  }
  const std::vector<double> first_order = flatten(grad({regression_loss(phi, xq, yq)}, phi));
  CHECK(relative_error(first_order, numeric) > 1e-3);
}
