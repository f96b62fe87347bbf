// The benchmark workloads of ../shared/BENCHMARKS.md as test fixtures for tests/speed/*.cpp:
// W1 (MLP 50-128-128-3 ReLU, cross-entropy, 3-way 5-shot: 15 support / 45 query rows, 5 inner SGD
// steps at 0.01; synthetic class-mean tasks) and W2 (sinusoid, MLP 1-40-40-1 ReLU, MSE, 10 / 10
// rows, 1 step at 0.01).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/fused_adapt.h"
#include "nn/mlp.h"
#include "tasks/gaussian_classes.h"
#include "tasks/sinusoid.h"
#include "tasks/task.h"

namespace speed_test {

using namespace metatape;

struct Workload {
  std::string name;
  std::shared_ptr<nn::Mlp> mlp;
  int steps = 1;
  double lr = 0.01;
  std::function<tasks::TaskBatch(Generator&, int)> sample;
};

// W1 tasks: tasks/gaussian_classes.h with its defaults (3-way 5-shot, 15 query rows per class).
inline tasks::Task w1_task(Generator& gen, DType dtype) {
  tasks::GaussianClassesOptions o;
  o.dtype = dtype;
  return tasks::sample_gaussian_classes(gen, o);
}

inline Workload w1(DType dtype) {
  Workload w;
  w.name = "W1";
  nn::MlpSpec spec{{50, 128, 128, 3}};
  spec.dtype = dtype;
  w.mlp = std::make_shared<nn::Mlp>(spec);
  w.steps = 5;
  w.lr = 0.01;
  w.sample = [dtype](Generator& gen, int n) {
    tasks::TaskBatch b;
    for (int i = 0; i < n; ++i) b.push_back(w1_task(gen, dtype));
    return b;
  };
  return w;
}

inline Workload w2(DType dtype) {
  Workload w;
  w.name = "W2";
  nn::MlpSpec spec{{1, 40, 40, 1}};
  spec.dtype = dtype;
  w.mlp = std::make_shared<nn::Mlp>(spec);
  w.steps = 1;
  w.lr = 0.01;
  w.sample = [dtype](Generator& gen, int n) {
    tasks::SinusoidOptions o;
    o.dtype = dtype;
    return tasks::sample_sinusoid_batch(gen, n, o);
  };
  return w;
}

inline kernels::FusedAdaptConfig fused_config(const Workload& w) {
  kernels::FusedAdaptConfig c;
  c.sizes = w.mlp->spec().sizes;
  c.activation = kernels::FusedActivation::relu;
  c.loss = w.name == "W1" ? kernels::FusedLoss::cross_entropy : kernels::FusedLoss::mse;
  c.steps = w.steps;
  c.lr = w.lr;
  return c;
}

// max |a - b| / max(1, max |b|) over all elements, in f64 on the host; +inf on a shape mismatch or
// a non-finite value (so a NaN never passes a tolerance check).
inline double max_scaled_diff(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return INFINITY;
  const auto x = a.to(Device::cpu).to(DType::f64).to_vector<double>();
  const auto y = b.to(Device::cpu).to(DType::f64).to_vector<double>();
  double diff = 0.0, scale = 1.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) return INFINITY;
    diff = std::max(diff, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return diff / scale;
}

}  // namespace speed_test
