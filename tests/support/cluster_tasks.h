// A fake classification family for tests: three Gaussian clusters per task (class c around per-task
// means drawn from U(-2, 2), noise sd 0.5), so meta-learning helps. Named "price_direction" so the
// trading metrics and buy-and-hold run too. Shared by tests/eval and tests/capi.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "tasks/task.h"

namespace metatape::test_support {

constexpr std::int64_t kClusterFeatures = 4, kClusterClasses = 3;

// Rows cycle through the classes (row i has class i mod 3); support and query share the task's means.
inline tasks::Task cluster_task(std::int64_t support, std::int64_t query, Generator& gen) {
  std::vector<double> means(static_cast<std::size_t>(kClusterClasses * kClusterFeatures));
  for (double& m : means) m = gen.uniform(-2.0, 2.0);
  auto rows = [&](std::int64_t n, Tensor& x, Tensor& y) {
    std::vector<double> xs;
    std::vector<std::int64_t> ys;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t c = i % kClusterClasses;
      ys.push_back(c);
      for (std::int64_t f = 0; f < kClusterFeatures; ++f) {
        xs.push_back(means[static_cast<std::size_t>(c * kClusterFeatures + f)] + 0.5 * gen.normal());
      }
    }
    x = Tensor::from_vector(xs, Shape{n, kClusterFeatures});
    y = Tensor::indices(ys);
  };
  tasks::Task t;
  rows(support, t.support_x, t.support_y);
  rows(query, t.query_x, t.query_y);
  t.kind = tasks::TaskKind::classification;
  t.num_classes = kClusterClasses;
  t.family = "price_direction";
  return t;
}

}  // namespace metatape::test_support
