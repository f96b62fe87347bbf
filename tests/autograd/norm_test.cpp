// batch_norm and layer_norm (autograd/ops_norm.cpp): hand-computed values, the running statistics'
// update and evaluation mode, MAML++-style per-step statistics, and bad arguments. Their derivatives
// are in the op table (op_table_test.cpp).
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"
#include "kernels/error.h"

using namespace metatape;

namespace {

Tensor f64(std::vector<double> v, Shape s) { return Tensor::from_vector(v, s, DType::f64); }

void check_values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-12) {
  const auto v = t.to_vector<double>();
  REQUIRE(v.size() == expected.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(expected[i]).epsilon(tol));
}

}  // namespace

TEST_CASE("batch_norm normalises each channel over the batch and the positions, then scales and shifts") {
  // Two channels over N = 2 images of 1 x 2 positions: channel 0 holds 1, 2, 3, 4; channel 1 holds 10 x4.
  const Tensor x = f64({1, 2, 10, 10, 3, 4, 10, 10}, Shape{2, 2, 1, 2});
  const Tensor y = batch_norm(x, f64({2, 1}, Shape{2}), f64({0.5, -1}, Shape{2}));
  const double s = 1.0 / std::sqrt(1.25 + 1e-5);  // mean 2.5, biased variance 1.25
  check_values(y, {2 * -1.5 * s + 0.5, 2 * -0.5 * s + 0.5, -1, -1, 2 * 0.5 * s + 0.5, 2 * 1.5 * s + 0.5, -1, -1});
  // (N, C): statistics over the rows.
  check_values(batch_norm(f64({0, 4, 2, 8}, Shape{2, 2}), Tensor(), Tensor(), true, nullptr, 1e-12), {-1, -1, 1, 1}, 1e-9);
}

TEST_CASE("batch_norm's running statistics: updated in training with the unbiased variance, used in evaluation") {
  const Tensor x = f64({1, 2, 3, 4}, Shape{4, 1});
  BatchNormStats stats = BatchNormStats::make(1, DType::f64);
  batch_norm(x, Tensor(), Tensor(), true, &stats);
  check_values(stats.mean, {0.1 * 2.5});
  check_values(stats.var, {0.9 + 0.1 * (5.0 / 3.0)});  // unbiased: 1.25 * 4 / 3
  const Tensor y = batch_norm(f64({1}, Shape{1, 1}), Tensor(), Tensor(), false, &stats);
  check_values(y, {(1 - 0.25) / std::sqrt(0.9 + 0.5 / 3.0 + 1e-5)});
  // Evaluation mode changes nothing; per-step statistics (MAML++) are separate objects.
  BatchNormStats step0 = BatchNormStats::make(1, DType::f64), step1 = BatchNormStats::make(1, DType::f64);
  batch_norm(x, Tensor(), Tensor(), true, &step0);
  batch_norm(affine(x, 1.0, 10.0), Tensor(), Tensor(), true, &step1);
  check_values(step0.mean, {0.25});
  check_values(step1.mean, {1.25});
}

TEST_CASE("layer_norm normalises over the last axis") {
  const Tensor y = layer_norm(f64({1, 3, 10, 10}, Shape{2, 2}), f64({1, 2}, Shape{2}), f64({0, 1}, Shape{2}), 1e-12);
  check_values(y, {-1, 3, 0, 1}, 1e-9);  // row 1 is constant: (x - mean) = 0 whatever the scale
}

TEST_CASE("batch_norm and layer_norm reject bad arguments, naming the fix") {
  const Tensor x = Tensor::zeros(Shape{2, 3, 4, 4});
  CHECK_THROWS_WITH_AS(batch_norm(Tensor::zeros(Shape{2, 3, 4}), Tensor(), Tensor()),
                       doctest::Contains("(N, C) or (N, C, H, W)"), Error);
  CHECK_THROWS_WITH_AS(batch_norm(x, Tensor::ones(Shape{4}), Tensor()),
                       doctest::Contains("weight must have shape (3), one per channel"), Error);
  CHECK_THROWS_WITH_AS(batch_norm(x, Tensor(), Tensor(), false), doctest::Contains("needs running statistics"), Error);
  BatchNormStats wrong = BatchNormStats::make(2);
  CHECK_THROWS_WITH_AS(batch_norm(x, Tensor(), Tensor(), true, &wrong), doctest::Contains("BatchNormStats::make"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(Tensor::zeros(Shape{2, 5}), Tensor::ones(Shape{4}), Tensor()),
                       doctest::Contains("one per feature"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(Tensor::zeros(Shape{2, 5}), Tensor(), Tensor(), 0.0),
                       doctest::Contains("eps must be > 0"), Error);
}
