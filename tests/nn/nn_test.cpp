// Parameter lists, the MLP, initialisers, losses, optimizers (against their formulas), clipping,
// accumulation and schedules.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "nn/init.h"
#include "nn/losses.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"

using namespace metatape;

TEST_CASE("parameter lists: names, lookup, layout checks") {
  nn::ParameterList p;
  p.add("a", Tensor::zeros(Shape{2}));
  p.add("b", Tensor::ones(Shape{3}));
  CHECK(p.index("b") == 1);
  CHECK(p.numel() == 5);
  CHECK_THROWS_WITH_AS(p.add("a", Tensor::zeros(Shape{1})), doctest::Contains("already"), Error);
  CHECK_THROWS_WITH_AS(p.get("c"), doctest::Contains("no parameter named 'c' (present: a, b)"), Error);
  CHECK_THROWS_WITH_AS(p.with_tensors({Tensor::zeros(Shape{2}), Tensor::zeros(Shape{4})}),
                       doctest::Contains("'b' expects shape (3)"), Error);
  nn::ParameterList c = p.clone(true);
  CHECK(c[0].requires_grad());
  c[1].assign(Tensor::zeros(Shape{3}));
  CHECK(p[1].to_vector<float>()[0] == 1.0f);  // clone is deep
  CHECK(p.select("b").size() == 1);
}

TEST_CASE("mlp: shapes, names, forward equals the layer formula, seeded init") {
  Generator g1(42), g2(42);
  nn::Mlp mlp(nn::MlpSpec{{3, 4, 2}, nn::Activation::tanh});
  const auto p1 = mlp.init(g1);
  const auto p2 = mlp.init(g2);
  CHECK(p1.names() == std::vector<std::string>{"layer0.weight", "layer0.bias", "layer1.weight", "layer1.bias"});
  CHECK(p1[0].to_vector<float>() == p2[0].to_vector<float>());
  const Tensor x = Tensor::from_vector(std::vector<double>{0.1, -0.2, 0.3, 1.0, 2.0, -1.0}, Shape{2, 3});
  const Tensor y = mlp.forward(p1, x);
  const Tensor expect = linear(tanh(linear(x, p1[0], p1[1])), p1[2], p1[3]);
  CHECK(y.to_vector<float>() == expect.to_vector<float>());
  CHECK(mlp.describe() == "mlp 3-4-2 tanh f32");
  CHECK_THROWS_WITH_AS(mlp.forward(p1, Tensor::zeros(Shape{2, 5})), doctest::Contains("has 5 features"), Error);
  CHECK_THROWS_AS(nn::Mlp(nn::MlpSpec{{3}}), Error);
  CHECK_THROWS_WITH_AS(nn::parse_activation("swish"), doctest::Contains("unknown activation 'swish'"), Error);
}

TEST_CASE("initialisers respect their bounds and variances") {
  Generator gen(1);
  const auto check_range = [](const Tensor& t, double bound) {
    double m2 = 0.0, largest = 0.0;
    for (double v : t.to_vector<double>()) {
      largest = std::max(largest, std::abs(v));
      m2 += v * v;
    }
    CHECK(largest <= bound);
    CHECK(largest > 0.9 * bound);
    return m2 / static_cast<double>(t.numel());
  };
  const double b = 1.0 / std::sqrt(100.0);
  const double var_u = check_range(nn::init_weight(nn::Init::uniform_fan_in, 200, 100, gen, DType::f64), b);
  CHECK(var_u == doctest::Approx(b * b / 3).epsilon(0.05));
  check_range(nn::init_bias(nn::Init::uniform_fan_in, 200, 100, gen, DType::f64), b);
  const double var_k =
      check_range(nn::init_weight(nn::Init::kaiming_uniform, 200, 100, gen, DType::f64), std::sqrt(6.0 / 100));
  CHECK(var_k == doctest::Approx(2.0 / 100).epsilon(0.05));
  const Tensor kn = nn::init_weight(nn::Init::kaiming_normal, 200, 100, gen, DType::f64);
  CHECK(mean(square(kn)).item() == doctest::Approx(2.0 / 100).epsilon(0.05));
  const double var_x =
      check_range(nn::init_weight(nn::Init::xavier_uniform, 200, 100, gen, DType::f64), std::sqrt(6.0 / 300));
  CHECK(var_x == doctest::Approx(2.0 / 300).epsilon(0.05));
  CHECK(sum(abs(nn::init_bias(nn::Init::xavier_normal, 5, 5, gen, DType::f64))).item() == 0.0);
  // Truncated N(0, 0.01^2) at 2 sigma: variance 0.01^2 * 0.7737 (the truncated normal's).
  const double var_s = check_range(nn::init_weight(nn::Init::small_normal, 200, 100, gen, DType::f64), 0.02);
  CHECK(var_s == doctest::Approx(1e-4 * 0.7737).epsilon(0.03));
  CHECK(sum(abs(nn::init_bias(nn::Init::small_normal, 5, 5, gen, DType::f64))).item() == 0.0);
  CHECK(nn::parse_init("small_normal") == nn::Init::small_normal);
  CHECK_THROWS_WITH_AS(nn::parse_init("tiny"), doctest::Contains("small_normal"), std::exception);
}

TEST_CASE("losses: values and gradients") {
  const Tensor logits = Tensor::from_vector(std::vector<double>{1, 2, 0.5, -1, 0, 3}, Shape{2, 3}, DType::f64);
  const Tensor labels = Tensor::indices({1, 2});
  const double ce = (-std::log(std::exp(2.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(0.5))) -
                     std::log(std::exp(3.0) / (std::exp(-1.0) + 1.0 + std::exp(3.0)))) /
                    2;
  CHECK(nn::cross_entropy_loss(logits, labels).item() == doctest::Approx(ce).epsilon(1e-12));
  CHECK(nn::nll_loss(log_softmax(logits), labels).item() == doctest::Approx(ce).epsilon(1e-12));
  CHECK(nn::mse_loss(logits, Tensor::zeros(Shape{2, 3}, DType::f64)).item() ==
        doctest::Approx((1 + 4 + 0.25 + 1 + 0 + 9) / 6.0));

  // negative Sharpe: hand computation for equal scores (equal weights).
  const Tensor returns =
      Tensor::from_vector(std::vector<double>{0.01, 0.03, -0.02, 0.0, 0.05, 0.01}, Shape{3, 2}, DType::f64);
  const Tensor scores = Tensor::zeros(Shape{3, 2}, DType::f64);
  const double r0 = 0.02, r1 = -0.01, r2 = 0.03, m = (r0 + r1 + r2) / 3;
  const double var = ((r0 - m) * (r0 - m) + (r1 - m) * (r1 - m) + (r2 - m) * (r2 - m)) / 3;
  CHECK(nn::negative_sharpe_loss(scores, returns).item() == doctest::Approx(-m / std::sqrt(var + 1e-8)).epsilon(1e-10));
  CHECK_THROWS_WITH_AS(
      nn::negative_sharpe_loss(Tensor::zeros(Shape{1, 2}, DType::f64), Tensor::zeros(Shape{1, 2}, DType::f64)),
      doctest::Contains("at least 2 rows"), Error);
  Generator gen(3);
  Tensor s = Tensor::normal(Shape{4, 3}, 0.0, 1.0, gen, DType::f64);
  s.requires_grad_();
  const Tensor r = Tensor::normal(Shape{4, 3}, 0.0, 0.05, gen, DType::f64);
  const auto result = gradcheck([&](const std::vector<Tensor>& in) { return nn::negative_sharpe_loss(in[0], r); }, {s});
  CHECK_MESSAGE(result.ok, result.message);
  CHECK(gradgradcheck([&](const std::vector<Tensor>& in) { return nn::negative_sharpe_loss(in[0], r); }, {s}).ok);
}

namespace {
nn::ParameterList one_param(std::vector<double> v) {
  nn::ParameterList p;
  Tensor t = Tensor::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, DType::f64);
  t.requires_grad_();
  p.add("w", t);
  return p;
}
Tensor vec(std::vector<double> v) {
  return Tensor::from_vector(v, Shape{static_cast<std::int64_t>(v.size())}, DType::f64);
}
}  // namespace

TEST_CASE("sgd with momentum, nesterov and weight decay follow PyTorch's update") {
  nn::OptimizerOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  auto opt = nn::make_sgd(o);
  auto p = one_param({1.0, -2.0});
  const std::vector<double> g1{0.5, 0.25}, g2{-1.0, 2.0};
  // step 1: g = g1 + wd p; buf = g; p -= lr buf
  double b0 = g1[0] + 0.01 * 1.0, p0 = 1.0 - 0.1 * b0;
  opt->step(p, {vec(g1)});
  CHECK(p[0].at({0}) == doctest::Approx(p0).epsilon(1e-15));
  // step 2: buf = 0.9 buf + g
  b0 = 0.9 * b0 + (g2[0] + 0.01 * p0);
  p0 -= 0.1 * b0;
  opt->step(p, {vec(g2)});
  CHECK(p[0].at({0}) == doctest::Approx(p0).epsilon(1e-15));
  CHECK(opt->steps_taken() == 2);
}

TEST_CASE("adam and adamw follow PyTorch's update") {
  for (bool decoupled : {false, true}) {
    nn::OptimizerOptions o;
    o.lr = 0.01;
    o.weight_decay = 0.1;
    auto opt = decoupled ? nn::make_adamw(o) : nn::make_adam(o);
    auto p = one_param({0.5});
    double x = 0.5, m = 0.0, v = 0.0;
    for (int t = 1; t <= 3; ++t) {
      const double g0 = 0.3 * t - 0.5;
      double g = g0;
      if (decoupled) {
        x *= 1.0 - 0.01 * 0.1;
      } else {
        g += 0.1 * x;
      }
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      const double denom = std::sqrt(v) / std::sqrt(1 - std::pow(0.999, t)) + 1e-8;
      x -= (0.01 / (1 - std::pow(0.9, t))) * m / denom;
      opt->step(p, {vec({g0})});
      CHECK(p[0].at({0}) == doctest::Approx(x).epsilon(1e-14));
    }
  }
}

TEST_CASE("clipping by global norm, gradient accumulation, schedules") {
  const auto clipped = nn::clip_by_global_norm({vec({3.0}), vec({4.0})}, 1.0);
  CHECK(clipped[0].at({0}) == doctest::Approx(3.0 / (5.0 + 1e-6)));
  CHECK(clipped[1].at({0}) == doctest::Approx(4.0 / (5.0 + 1e-6)));
  const auto unclipped = nn::clip_by_global_norm({vec({0.3})}, 1.0);
  CHECK(unclipped[0].at({0}) == 0.3);

  nn::OptimizerOptions o;
  o.lr = 1.0;
  o.accumulation_steps = 3;
  auto opt = nn::make_sgd(o);
  auto p = one_param({0.0});
  CHECK_FALSE(opt->step(p, {vec({1.0})}));
  CHECK_FALSE(opt->step(p, {vec({2.0})}));
  CHECK(p[0].at({0}) == 0.0);
  CHECK(opt->step(p, {vec({6.0})}));
  CHECK(p[0].at({0}) == doctest::Approx(-3.0));  // mean of the three

  nn::LrSchedule step;
  step.kind = nn::LrSchedule::Kind::step;
  step.step_size = 10;
  step.gamma = 0.5;
  CHECK(step.lr_at(1.0, 9) == 1.0);
  CHECK(step.lr_at(1.0, 25) == 0.25);
  nn::LrSchedule cosine;
  cosine.kind = nn::LrSchedule::Kind::cosine;
  cosine.total_steps = 100;
  cosine.warmup_steps = 10;
  cosine.min_lr = 0.1;
  CHECK(cosine.lr_at(1.0, 0) == doctest::Approx(0.1));
  CHECK(cosine.lr_at(1.0, 9) == doctest::Approx(1.0));
  CHECK(cosine.lr_at(1.0, 60) == doctest::Approx(0.55));
  CHECK(cosine.lr_at(1.0, 110) == doctest::Approx(0.1));
  CHECK(cosine.lr_at(1.0, 500) == doctest::Approx(0.1));

  CHECK_THROWS_WITH_AS(nn::make_optimizer("rmsprop", {}), doctest::Contains("unknown kind 'rmsprop'"), Error);
  auto sgd = nn::make_sgd({});
  auto p2 = one_param({1.0, 2.0});
  CHECK_THROWS_WITH_AS(sgd->step(p2, {vec({1.0})}), doctest::Contains("does not match parameter 'w'"), Error);
}

TEST_CASE("optimizer state round-trips: a reloaded optimizer continues identically") {
  nn::OptimizerOptions o;
  o.lr = 0.05;
  o.accumulation_steps = 2;
  auto a = nn::make_adam(o);
  auto pa = one_param({1.0, -1.0});
  for (int t = 0; t < 5; ++t) a->step(pa, {vec({0.1 * t, -0.2})});  // leaves one pending gradient
  auto b = nn::make_adam(o);
  b->load_state(a->state().clone());
  auto pb = pa.clone(true);
  for (int t = 5; t < 9; ++t) {
    a->step(pa, {vec({0.1 * t, 0.3})});
    b->step(pb, {vec({0.1 * t, 0.3})});
  }
  CHECK(pa[0].to_vector<double>() == pb[0].to_vector<double>());
  CHECK(a->steps_taken() == b->steps_taken());
}
