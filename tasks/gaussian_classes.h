// Synthetic few-shot classification tasks (the W1 workload of ../shared/BENCHMARKS.md): every task
// draws its own class means, N(0, 1) per feature, and each row is its class mean plus
// noise * N(0, 1) per feature, so a learner must use the support set. Rows are grouped by class
// (class 0's rows first). Draw order: the means, then the support rows, then the query rows.
// Task fields: kind classification, family "gaussian-classes", x (rows, features), y int64 labels.
#pragma once

#include <cstdint>

#include "autograd/random.h"
#include "tasks/task.h"

namespace metatape::tasks {

struct GaussianClassesOptions {
  std::int64_t classes = 3;
  std::int64_t features = 50;
  std::int64_t support_per_class = 5;
  std::int64_t query_per_class = 15;
  double noise = 1.5;  // standard deviation of a row around its class mean
  DType dtype = DType::f32;
  Device device = Device::cpu;
};

// Throws naming the option when a count is < 1 or noise is negative or not finite.
Task sample_gaussian_classes(Generator& gen, const GaussianClassesOptions& options = {});
TaskBatch sample_gaussian_classes_batch(Generator& gen, std::int64_t tasks, const GaussianClassesOptions& options = {});

}  // namespace metatape::tasks
