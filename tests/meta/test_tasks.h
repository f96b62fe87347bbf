// W1-shaped synthetic classification tasks for the meta tests (tasks/gaussian_classes.h with its
// defaults: 3 classes, 50 features, 5 support and 15 query rows per class, noise 1.5).
#pragma once

#include "autograd/random.h"
#include "tasks/gaussian_classes.h"

namespace test_tasks {

inline metatape::tasks::Task w1_task(metatape::Generator& gen, metatape::DType dtype = metatape::DType::f32) {
  metatape::tasks::GaussianClassesOptions o;
  o.dtype = dtype;
  return metatape::tasks::sample_gaussian_classes(gen, o);
}

inline metatape::tasks::TaskBatch w1_batch(metatape::Generator& gen, int n) {
  return metatape::tasks::sample_gaussian_classes_batch(gen, n);
}

}  // namespace test_tasks
