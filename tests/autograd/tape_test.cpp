// The tape's contract: grad/backward semantics, scopes and marks, memory release, and the errors that
// name the culprit.
#include <doctest/doctest.h>

#include <cmath>
#include <thread>

#include "autograd/ops.h"
#include "autograd/tape.h"

using namespace metatape;

namespace {
Tensor param(std::vector<double> values, Shape shape, const char* name) {
  Tensor t = Tensor::from_vector(values, shape, DType::f64);
  t.requires_grad_().set_name(name);
  return t;
}
}  // namespace

TEST_CASE("grad of a simple expression and backward() accumulation into leaves") {
  Tensor x = param({1.0, 2.0, 3.0}, Shape{3}, "x");
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  const auto g = grad({y}, {x});
  CHECK(g[0].to_vector<double>() == std::vector<double>{2, 4, 6});

  Tensor z = sum(mul(x, x));
  z.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  Tensor w = sum(x);
  w.backward();  // accumulates
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("recording follows grad mode and requires_grad") {
  Tensor x = param({1.0, 2.0}, Shape{2}, "x");
  const Tensor c = Tensor::ones(Shape{2}, DType::f64);
  CHECK(add(x, c).requires_grad());
  CHECK_FALSE(add(c, c).requires_grad());
  {
    NoGradGuard off;
    CHECK_FALSE(add(x, c).requires_grad());
  }
  CHECK(add(x, c).requires_grad());
}

TEST_CASE("second order: d2/dx2 of x^3 through create_graph") {
  Tensor x = param({0.5, -1.5}, Shape{2}, "x");
  Tensor y = sum(pow(x, 3.0));
  GradOptions opts;
  opts.create_graph = true;
  const Tensor dx = grad({y}, {x}, opts)[0];  // 3x^2
  CHECK(dx.requires_grad());
  const Tensor ddx = grad({sum(dx)}, {x})[0];  // 6x
  CHECK(ddx.at({0}) == doctest::Approx(3.0));
  CHECK(ddx.at({1}) == doctest::Approx(-9.0));
}

TEST_CASE("grad with respect to an intermediate tensor") {
  Tensor x = param({1.0, 2.0}, Shape{2}, "x");
  Tensor h = mul(x, x).set_name("h");
  Tensor y = sum(mul(h, Tensor::full(Shape{2}, 3.0, DType::f64)));
  const auto g = grad({y}, {h, x});
  CHECK(g[0].to_vector<double>() == std::vector<double>{3, 3});
  CHECK(g[1].to_vector<double>() == std::vector<double>{6, 12});
}

TEST_CASE("errors name the culprit") {
  SUBCASE("shape mismatch names the op and both shapes") {
    const Tensor a = Tensor::zeros(Shape{3, 4});
    const Tensor b = Tensor::zeros(Shape{5});
    CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("add: shapes (3, 4) and (5) do not broadcast"), Error);
    CHECK_THROWS_WITH_AS(matmul(a, Tensor::zeros(Shape{5, 2})), doctest::Contains("matmul: inner dimensions differ"),
                         Error);
    const Tensor x = Tensor::zeros(Shape{8, 49});
    const Tensor w = Tensor::zeros(Shape{128, 50});
    CHECK_THROWS_WITH_AS(linear(x, w, Tensor()),
                         doctest::Contains("linear: input has 49 features, weight (128, 50) expects 50"), Error);
  }
  SUBCASE("dtype mismatch names the op and both dtypes") {
    const Tensor a = Tensor::zeros(Shape{2}, DType::f32);
    const Tensor b = Tensor::zeros(Shape{2}, DType::f64);
    CHECK_THROWS_WITH_AS(mul(a, b), doctest::Contains("mul: dtypes differ, tensor (2) f32 and tensor (2) f64"), Error);
  }
  SUBCASE("an unused input is named") {
    Tensor x = param({1.0}, Shape{1}, "layer1.weight");
    Tensor unused = param({1.0, 2.0}, Shape{2}, "head.bias");
    const Tensor y = sum(mul(x, x));
    CHECK_THROWS_WITH_AS(grad({y}, {x, unused}),
                         doctest::Contains("('head.bias' (2)) does not reach the outputs; pass allow_unused"), Error);
    GradOptions opts;
    opts.allow_unused = true;
    const auto g = grad({sum(mul(x, x))}, {x, unused}, opts);
    CHECK(g[1].to_vector<double>() == std::vector<double>{0, 0});
  }
  SUBCASE("backward through a released scope says so") {
    Tensor x = param({1.0, 2.0}, Shape{2}, "x");
    Tensor h;
    {
      TapeScope scope;
      h = exp(x).set_name("adapted");
    }
    const Tensor y = sum(mul(h, h));
    CHECK_THROWS_WITH_AS(
        grad({y}, {x}), doctest::Contains("backward through a released scope: 'adapted' (2) was made by 'exp'"), Error);
  }
  SUBCASE("a second backward without retain_graph says so") {
    Tensor x = param({1.0, 2.0}, Shape{2}, "x");
    const Tensor y = sum(exp(x));
    grad({y}, {x});
    CHECK_THROWS_WITH_AS(grad({y}, {x}), doctest::Contains("a second time"), Error);
    const Tensor z = sum(exp(x));
    GradOptions keep;
    keep.retain_graph = true;
    const auto g1 = grad({z}, {x}, keep);
    const auto g2 = grad({z}, {x}, keep);
    CHECK(g1[0].to_vector<double>() == g2[0].to_vector<double>());
  }
  SUBCASE("detect_anomaly names the first op producing NaN") {
    Tensor x = param({-1.0, 2.0}, Shape{2}, "x");
    DetectAnomalyGuard anomaly;
    CHECK_THROWS_WITH_AS(sum(sqrt(exp(log(x)))),
                         doctest::Contains("detect_anomaly: op 'log' produced NaN in its output"), Error);
  }
  SUBCASE("detect_anomaly names the op whose backward produces Inf") {
    Tensor x = param({0.0, 1.0}, Shape{2}, "x");
    DetectAnomalyGuard anomaly;
    const Tensor y = sum(sqrt(x));
    CHECK_THROWS_WITH_AS(grad({y}, {x}), doctest::Contains("op 'sqrt' produced Inf in its gradient"), Error);
  }
  SUBCASE("grad of a non-scalar output needs grad_outputs") {
    Tensor x = param({1.0, 2.0}, Shape{2}, "x");
    CHECK_THROWS_WITH_AS(grad({mul(x, x)}, {x}), doctest::Contains("pass grad_outputs"), Error);
    const auto g = grad({mul(x, x)}, {x}, {}, {Tensor::ones(Shape{2}, DType::f64)});
    CHECK(g[0].to_vector<double>() == std::vector<double>{2, 4});
  }
  SUBCASE("an input that does not require grad is refused") {
    const Tensor c = Tensor::ones(Shape{2}, DType::f64).set_name("data");
    Tensor x = param({1.0, 2.0}, Shape{2}, "x");
    CHECK_THROWS_WITH_AS(grad({sum(mul(x, c))}, {c}), doctest::Contains("('data' (2)) does not require grad"), Error);
  }
}

TEST_CASE("scopes release what was recorded inside; marks release nested work") {
  Tensor x = param({1.0, 2.0, 3.0}, Shape{3}, "x");
  const std::size_t before = tape_size();
  {
    TapeScope scope;
    Tensor y = sum(exp(mul(x, x)));
    CHECK(tape_size() == before + 3);
    const auto g = grad({y}, {x});
    CHECK(g[0].numel() == 3);
  }
  CHECK(tape_size() == before);

  const TapeMark outer = tape_mark();
  Tensor kept = mul(x, x);
  const TapeMark inner = tape_mark();
  Tensor scratch = exp(kept);
  (void)scratch;
  release_since(inner);
  CHECK(tape_size() == before + 1);
  const auto g = grad({sum(kept)}, {x});
  CHECK(g[0].to_vector<double>() == std::vector<double>{2, 4, 6});
  release_since(outer);
  CHECK(tape_size() == before);
}

TEST_CASE("the tape drops nodes whose outputs died, so loops without scopes do not grow it") {
  Tensor x = param({1.0, 2.0}, Shape{2}, "x");
  const std::size_t before = tape_size(true);
  for (int i = 0; i < 10000; ++i) {
    Tensor y = sum(exp(mul(x, x)));  // saved outputs (exp) must not keep their own nodes alive
    (void)y;
  }
  CHECK(tape_size(true) == before);
}

TEST_CASE("gradients of shared inputs accumulate across uses") {
  Tensor x = param({2.0}, Shape{1}, "x");
  const Tensor y = add(mul(x, x), mul(x, Tensor::full(Shape{1}, 3.0, DType::f64)));  // x^2 + 3x
  CHECK(grad({y}, {x})[0].item() == doctest::Approx(7.0));
}

TEST_CASE("threads differentiate through the same leaves at once and agree with one thread") {
  Generator gen(8);
  Tensor w = Tensor::uniform(Shape{16, 8}, -1, 1, gen, DType::f64).requires_grad_().set_name("w");
  Tensor b = Tensor::uniform(Shape{16}, -1, 1, gen, DType::f64).requires_grad_().set_name("b");
  const Tensor x = Tensor::uniform(Shape{32, 8}, -1, 1, gen, DType::f64);
  auto inner_step_grad = [&]() {
    GradOptions create;
    create.create_graph = true;
    TapeScope scope;
    const auto g = grad({sum(square(tanh(linear(x, w, b))))}, {w, b}, create);
    const Tensor adapted = sub(w, affine(g[0], 0.1, 0.0));
    return grad({sum(square(linear(x, adapted, b)))}, {w, b});
  };
  const auto expected = inner_step_grad();
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        const auto got = inner_step_grad();
        for (std::size_t k = 0; k < got.size(); ++k) {
          if (got[k].to_vector<double>() != expected[k].to_vector<double>()) ++mismatches[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) CHECK(m == 0);
}

TEST_CASE("first-order inner loop: grad() w.r.t. intermediates leaves the path to the leaves intact") {
  // FOMAML's pattern: inner gradients without create_graph (and without retain_graph) taken with
  // respect to the current fast weights, then one outer gradient through every update to the leaves.
  Tensor w = param({0.5, -0.3}, Shape{2}, "w");
  const Tensor x = Tensor::from_vector(std::vector<double>{1.0, 2.0}, Shape{2}, DType::f64);
  Tensor fast = w;
  for (int step = 0; step < 3; ++step) {
    const auto g = grad({sum(square(mul(fast, x)))}, {fast});
    fast = sub(fast, affine(g[0], 0.1, 0.0));  // g is a constant: first order
  }
  const auto outer = grad({sum(mul(fast, x))}, {w});
  // d fast / d w is the identity when the inner gradients are constants.
  CHECK(outer[0].to_vector<double>() == std::vector<double>{1.0, 2.0});
}
