// log_softmax and the fused cross-entropy on confident rows, in f32, against high-precision values:
// the forward is computed as (x - max) - log(sum exp(x - max)), never x - (max + log(sum)).
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/tensor.h"

using namespace metatape;

TEST_CASE("f32 cross-entropy and log_softmax of a confident row are exact to f32 precision") {
  // logits [100, 90], label 0: loss = log(1 + e^-10) = 4.539889921686e-5 (computed in long double).
  const long double exact = std::log1p(std::exp(-10.0L));
  const Tensor logits = Tensor::from_vector(std::vector<double>{100.0, 90.0}, Shape{1, 2}, DType::f32);
  const double ce = cross_entropy(logits, Tensor::indices({0})).to_vector<double>()[0];
  CHECK(std::fabs(ce - static_cast<double>(exact)) <= 1e-6 * static_cast<double>(exact) + 1e-12);
  const auto ls = log_softmax(logits).to_vector<double>();
  CHECK(std::fabs(ls[0] + static_cast<double>(exact)) <= 1e-6 * static_cast<double>(exact) + 1e-12);
  CHECK(ls[1] == doctest::Approx(-10.0 - static_cast<double>(exact)).epsilon(1e-7));
}

TEST_CASE("f32 Hessian-vector products of log_softmax on confident rows match the f64 computation") {
  // Rows at logit scale 1e3 (every row confident): HVP of sum(w * log_softmax(x)) along v, in f32
  // against the same computation in f64.
  Generator gen(11);
  const Tensor x64 = Tensor::uniform(Shape{16, 5}, -1e3, 1e3, gen, DType::f64);
  const Tensor w64 = Tensor::uniform(Shape{16, 5}, -1, 1, gen, DType::f64);
  const Tensor v64 = Tensor::uniform(Shape{16, 5}, -1, 1, gen, DType::f64);
  auto hvp = [&](DType dtype) {
    Tensor x = Tensor::from_vector(x64.to_vector<double>(), x64.shape(), dtype).requires_grad_();
    const Tensor w = Tensor::from_vector(w64.to_vector<double>(), w64.shape(), dtype);
    const Tensor v = Tensor::from_vector(v64.to_vector<double>(), v64.shape(), dtype);
    GradOptions create;
    create.create_graph = true;
    const Tensor g = grad({sum(mul(w, log_softmax(x)))}, {x}, create)[0];
    return grad({sum(mul(g, v))}, {x})[0].to_vector<double>();
  };
  const auto h32 = hvp(DType::f32), h64 = hvp(DType::f64);
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < h64.size(); ++i) {
    num += (h32[i] - h64[i]) * (h32[i] - h64[i]);
    den += h64[i] * h64[i];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));
  MESSAGE("f32 vs f64 HVP relative error " << rel);
  CHECK(rel <= 1e-3);
}
