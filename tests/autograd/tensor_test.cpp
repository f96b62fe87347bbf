#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/tensor.h"

using namespace metatape;

TEST_CASE("tensor construction, access and printing") {
  const Tensor t = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.dtype() == DType::f32);
  CHECK(t.at({1, 2}) == 6.0);
  CHECK(Tensor::zeros(Shape{3}).to_vector<double>() == std::vector<double>{0, 0, 0});
  CHECK(Tensor::ones(Shape{2}, DType::f64).to_vector<double>() == std::vector<double>{1, 1});
  CHECK(Tensor::full(Shape{1}, 2.5).item() == 2.5);
  CHECK(Tensor::arange(4).to_vector<double>() == std::vector<double>{0, 1, 2, 3});
  CHECK(reinterpret_cast<std::uintptr_t>(t.raw_data()) % 64 == 0);
  Tensor named = Tensor::zeros(Shape{2}).set_name("bias");
  CHECK(named.str().find("bias") != std::string::npos);
  CHECK_THROWS_WITH_AS(Tensor::from_vector(std::vector<double>{1, 2}, Shape{3}),
                       doctest::Contains("2 values given for shape (3)"), Error);
  CHECK_THROWS_WITH_AS(t.at({2, 0}), doctest::Contains("out of range"), Error);
  CHECK_THROWS_WITH_AS((Shape{1, 2, 3, 4, 5}), doctest::Contains("over the maximum of 4"), Error);
}

TEST_CASE("generator: same seed, same numbers; known values pin the stream") {
  Generator a(42), b(42);
  for (int i = 0; i < 100; ++i) CHECK(a.next_u64() == b.next_u64());
  Generator c(1);
  const std::uint64_t first = c.next_u64();
  Generator d(1);
  CHECK(d.next_u64() == first);
  Generator e(3);
  double sum = 0, sum_sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double x = e.normal();
    sum += x;
    sum_sq += x * x;
  }
  CHECK(std::abs(sum / n) < 0.03);
  CHECK(std::abs(sum_sq / n - 1.0) < 0.05);
  Generator f(9);
  const Generator::State s = f.state();
  const double x1 = f.normal();
  f.set_state(s);
  CHECK(f.normal() == x1);
  Generator g(5);
  const Tensor u = Tensor::uniform(Shape{1000}, -2.0, 3.0, g, DType::f64);
  for (double v : u.to_vector<double>()) CHECK((v >= -2.0 && v < 3.0));
}

TEST_CASE("piece: a range of elements as a tensor sharing the storage; out-of-range pieces refused") {
  Tensor t = Tensor::from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, Shape{2, 3}, DType::f64);
  const Tensor p = t.piece(2, Shape{2, 2});
  CHECK(p.to_vector<double>() == std::vector<double>{2, 3, 4, 5});
  t.assign(Tensor::from_vector(std::vector<double>{9, 9, 7, 7, 7, 7}, Shape{2, 3}, DType::f64));
  CHECK(p.to_vector<double>() == std::vector<double>{7, 7, 7, 7});  // shared, not copied
  CHECK(p.detach().piece(1, Shape{}).item() == 7.0);
  CHECK_THROWS_WITH_AS(t.piece(4, Shape{3}), doctest::Contains("outside"), std::exception);
  CHECK_THROWS_WITH_AS(t.piece(-1, Shape{1}), doctest::Contains("outside"), std::exception);
}
