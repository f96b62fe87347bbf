// The fused updates: inner_update (scalar and per-parameter rates) against finite differences at first
// and second order on the CPU, a MAML-style second-order gradient through it against the unfused ops,
// Adam / AdamW against the formulas written out, and the CUDA kernels against the CPU reference.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/update_ops.h"
#include "gpu_available.h"

using namespace metatape;

TEST_CASE("inner_update: first and second derivatives match finite differences (f64, CPU)") {
  Generator gen(21);
  const Tensor theta = Tensor::normal(Shape{4, 3}, 0, 1, gen, DType::f64).requires_grad_();
  const Tensor g = Tensor::normal(Shape{4, 3}, 0, 1, gen, DType::f64).requires_grad_();
  const Tensor rates = Tensor::uniform(Shape{4, 3}, 0.1, 0.9, gen, DType::f64).requires_grad_();
  const Tensor rate = Tensor::uniform(Shape{1}, 0.1, 0.9, gen, DType::f64).requires_grad_();
  // Products with theta make the second derivative nonzero.
  const DifferentiableFn scalar = [](const std::vector<Tensor>& x) {
    return mul(inner_update(x[0], mul(x[1], x[0]), 0.3), x[1]);
  };
  const DifferentiableFn per_param = [](const std::vector<Tensor>& x) {
    return mul(inner_update(x[0], mul(x[1], x[0]), x[2]), x[2]);
  };
  for (const auto& [f, inputs] : std::vector<std::pair<DifferentiableFn, std::vector<Tensor>>>{
           {scalar, {theta, g}}, {per_param, {theta, g, rates}}, {per_param, {theta, g, rate}}}) {
    const GradcheckResult r1 = gradcheck(f, inputs);
    CHECK_MESSAGE(r1.ok, r1.message);
    const GradcheckResult r2 = gradgradcheck(f, inputs);
    CHECK_MESSAGE(r2.ok, r2.message);
  }
}

TEST_CASE("inner_update: values and errors") {
  const Tensor theta = Tensor::from_vector(std::vector<double>{1, 2, 3}, Shape{3}, DType::f64);
  const Tensor g = Tensor::from_vector(std::vector<double>{10, -10, 0}, Shape{3}, DType::f64);
  CHECK(inner_update(theta, g, 0.25).to_vector<double>() == std::vector<double>{-1.5, 4.5, 3});
  const Tensor rates = Tensor::from_vector(std::vector<double>{0.5, 0.25, 1}, Shape{3}, DType::f64);
  CHECK(inner_update(theta, g, rates).to_vector<double>() == std::vector<double>{-4, 4.5, 3});
  CHECK_THROWS_WITH_AS(inner_update(theta, Tensor::zeros(Shape{4}, DType::f64), 0.1),
                       doctest::Contains("need the same shape"), Error);
  CHECK_THROWS_WITH_AS(inner_update(theta, g, Tensor::ones(Shape{2}, DType::f64)),
                       doctest::Contains("must be one element or match the parameter"), Error);
}

// A two-step MAML inner loop on a tiny linear model: the meta-gradient through the fused update must
// equal the one through sub(theta, mul(lr, g)).
TEST_CASE("inner_update: MAML meta-gradient equals the unfused ops' (second order, f64)") {
  Generator gen(4);
  const Tensor w0 = Tensor::normal(Shape{3, 5}, 0, 0.5, gen, DType::f64).requires_grad_();
  const Tensor x = Tensor::normal(Shape{8, 5}, 0, 1, gen, DType::f64);
  const Tensor y = Tensor::indices({0, 1, 2, 0, 1, 2, 0, 1});
  const Tensor lr = Tensor::full(Shape{3, 5}, 0.4, DType::f64).requires_grad_();
  auto meta_grad = [&](bool fused) {
    Tensor w = w0;
    GradOptions o;
    o.create_graph = true;
    for (int s = 0; s < 2; ++s) {
      const Tensor g = grad({cross_entropy(matmul(x, transpose(w)), y)}, {w}, o)[0];
      w = fused ? inner_update(w, g, lr) : sub(w, mul(lr, g));
    }
    return grad({cross_entropy(matmul(x, transpose(w)), y)}, {w0, lr});
  };
  const std::vector<Tensor> a = meta_grad(true);
  const std::vector<Tensor> b = meta_grad(false);
  for (std::size_t j = 0; j < 2; ++j) {
    const std::vector<double> va = a[j].to_vector<double>(), vb = b[j].to_vector<double>();
    for (std::size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(1e-12));
  }
}

TEST_CASE("adam_update: Adam and AdamW follow the written-out formulas over several steps") {
  for (bool decoupled : {false, true}) {
    Generator gen(8);
    AdamConfig c;
    c.lr = 0.05;
    c.weight_decay = 0.1;
    c.decoupled_weight_decay = decoupled;
    const Tensor p = Tensor::normal(Shape{2, 3}, 0, 1, gen, DType::f64);
    const Tensor m = Tensor::zeros(Shape{2, 3}, DType::f64);
    const Tensor v = Tensor::zeros(Shape{2, 3}, DType::f64);
    std::vector<double> ep = p.to_vector<double>(), em(6, 0.0), ev(6, 0.0);
    for (int step = 1; step <= 4; ++step) {
      const Tensor g = Tensor::normal(Shape{2, 3}, 0, 1, gen, DType::f64);
      const std::vector<double> gv = g.to_vector<double>();
      adam_update(p, g, m, v, c, step);
      for (std::size_t i = 0; i < 6; ++i) {
        double gi = gv[i];
        if (decoupled)
          ep[i] *= 1 - c.lr * c.weight_decay;
        else
          gi += c.weight_decay * ep[i];
        em[i] = c.beta1 * em[i] + (1 - c.beta1) * gi;
        ev[i] = c.beta2 * ev[i] + (1 - c.beta2) * gi * gi;
        const double mh = em[i] / (1 - std::pow(c.beta1, step));
        const double vh = ev[i] / (1 - std::pow(c.beta2, step));
        ep[i] -= c.lr * mh / (std::sqrt(vh) + c.eps);
      }
      const std::vector<double> got = p.to_vector<double>();
      for (std::size_t i = 0; i < 6; ++i) CHECK(got[i] == doctest::Approx(ep[i]).epsilon(1e-12));
    }
  }
  const Tensor p = Tensor::zeros(Shape{3});
  CHECK_THROWS_WITH_AS(adam_update(p, Tensor::zeros(Shape{4}), p, p, AdamConfig{}, 1),
                       doctest::Contains("does not match the parameter"), Error);
  CHECK_THROWS_WITH_AS(adam_update(p, p, Tensor::zeros(Shape{3}), Tensor::zeros(Shape{3}), AdamConfig{}, 0),
                       doctest::Contains("must be >= 1"), Error);
}

TEST_CASE("cuda updates: sgd and Adam kernels match the CPU reference (f32 and f64)") {
  if (!gpu_available()) return;
  for (DType dtype : {DType::f32, DType::f64}) {
    Generator gen(31);
    const Shape shape{37, 29};
    const Tensor p = Tensor::normal(shape, 0, 1, gen, dtype);
    const Tensor g = Tensor::normal(shape, 0, 1, gen, dtype);
    const Tensor rates = Tensor::uniform(shape, 0.01, 0.1, gen, dtype);
    const Tensor pd = p.to(Device::cuda), gd = g.to(Device::cuda), rd = rates.to(Device::cuda);
    auto close = [](const Tensor& a, const Tensor& b) {
      const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
      REQUIRE(va.size() == vb.size());
      for (std::size_t i = 0; i < va.size(); ++i) CHECK(va[i] == doctest::Approx(vb[i]).epsilon(1e-6));
    };
    close(inner_update(pd, gd, 0.01), inner_update(p, g, 0.01));
    close(inner_update(pd, gd, rd), inner_update(p, g, rates));
    for (bool decoupled : {false, true}) {
      AdamConfig c;
      c.weight_decay = 0.01;
      c.decoupled_weight_decay = decoupled;
      const Tensor pc = p.copy(), mc = Tensor::zeros(shape, dtype), vc = Tensor::zeros(shape, dtype);
      const Tensor pg = pd.copy(), mg = Tensor::zeros(shape, dtype, Device::cuda),
                   vg = Tensor::zeros(shape, dtype, Device::cuda);
      for (int step = 1; step <= 3; ++step) {
        adam_update(pc, g, mc, vc, c, step);
        adam_update(pg, gd, mg, vg, c, step);
      }
      close(pg, pc);
      close(mg, mc);
      close(vg, vc);
    }
  }
}
