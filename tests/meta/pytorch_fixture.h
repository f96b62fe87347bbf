// What the PyTorch fixture tests share (tests/meta/parity_test.cpp, conv4_parity_test.cpp): an outer
// "optimizer" that records the meta-gradient, the fixtures' JSON tensor decoding, and the tolerance
// check. Fixture layout: scripts/make_pytorch_fixtures.py.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "nn/optimizer.h"
#include "nn/parameters.h"

namespace metatape::test {

using nlohmann::json;

// An outer "optimizer" that records the gradient it is given and leaves the parameters alone.
class Recorder final : public nn::Optimizer {
 public:
  Recorder() : nn::Optimizer(nn::OptimizerOptions{}) {}
  std::string name() const override { return "recorder"; }
  std::vector<Tensor> grads;

 protected:
  void update(std::size_t i, Tensor&, const Tensor& g, double) override {
    if (grads.size() <= i) grads.resize(i + 1);
    grads[i] = g.copy();
  }
  void save_slots(nn::ParameterList&) const override {}
  void load_slots(const nn::ParameterList&) override {}
};

inline Tensor decode(const json& j, DType dtype) {
  const auto& dims = j.at("shape");
  Shape shape = Shape::of_rank(static_cast<int>(dims.size()));
  for (std::size_t a = 0; a < dims.size(); ++a) shape[static_cast<int>(a)] = dims[a].get<std::int64_t>();
  if (dtype == DType::i64) return Tensor::indices(j.at("data").get<std::vector<std::int64_t>>());
  return Tensor::from_vector(j.at("data").get<std::vector<double>>(), shape, dtype);
}

inline nn::ParameterList decode_list(const json& j, DType dtype) {
  nn::ParameterList out;
  for (const auto& [name, value] : j.items()) out.add(name, decode(value, dtype));
  return out;
}

inline void check_close(const std::string& what, const Tensor& ours, const Tensor& theirs, double tol, double floor = 0.0) {
  CAPTURE(what);
  REQUIRE(ours.shape() == theirs.shape());
  const auto a = ours.to_vector<double>();
  const auto b = theirs.to_vector<double>();
  double scale = floor, diff = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  CAPTURE(diff);
  CAPTURE(scale);
  CHECK(diff <= tol * std::max(scale, 1e-300));
}


inline std::string source_dir() {
  const char* env = std::getenv("METATAPE_SOURCE_DIR");
  return env ? env : METATAPE_SOURCE_DIR;
}

}  // namespace metatape::test
