// W1-shaped synthetic classification tasks for the meta tests: 3 classes, 50 features, 5 support and
// 15 query rows per class. Each task draws its own class means (N(0, 1) per feature) and rows are
// mean + N(0, 1.5^2) noise, so a few-shot learner must use the support set. Rows are grouped by class.
#pragma once

#include <vector>

#include "autograd/random.h"
#include "tasks/task.h"

namespace test_tasks {

inline metatape::tasks::Task w1_task(metatape::Generator& gen, metatape::DType dtype = metatape::DType::f32) {
  using namespace metatape;
  constexpr int classes = 3, features = 50, shots = 5, queries = 15;
  std::vector<double> means(classes * features);
  for (auto& m : means) m = gen.normal();
  auto draw = [&](int per_class, Tensor& x, Tensor& y) {
    std::vector<double> xs;
    std::vector<std::int64_t> ys;
    for (int c = 0; c < classes; ++c) {
      for (int r = 0; r < per_class; ++r) {
        for (int f = 0; f < features; ++f) xs.push_back(means[c * features + f] + 1.5 * gen.normal());
        ys.push_back(c);
      }
    }
    x = Tensor::from_vector(xs, Shape{classes * per_class, features}, dtype);
    y = Tensor::indices(ys);
  };
  tasks::Task t;
  draw(shots, t.support_x, t.support_y);
  draw(queries, t.query_x, t.query_y);
  t.kind = tasks::TaskKind::classification;
  t.num_classes = classes;
  t.family = "w1-synthetic";
  return t;
}

inline metatape::tasks::TaskBatch w1_batch(metatape::Generator& gen, int n) {
  metatape::tasks::TaskBatch b;
  for (int i = 0; i < n; ++i) b.push_back(w1_task(gen));
  return b;
}

}  // namespace test_tasks
