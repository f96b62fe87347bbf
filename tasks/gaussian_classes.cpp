#include "tasks/gaussian_classes.h"

#include <cmath>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace metatape::tasks {

Task sample_gaussian_classes(Generator& gen, const GaussianClassesOptions& o) {
  auto require_positive = [](std::int64_t value, const char* name) {
    if (value < 1) fail(std::string("gaussian classes: ") + name + " must be >= 1, got " + std::to_string(value));
  };
  require_positive(o.classes, "classes");
  require_positive(o.features, "features");
  require_positive(o.support_per_class, "support_per_class");
  require_positive(o.query_per_class, "query_per_class");
  if (!(o.noise >= 0.0) || !std::isfinite(o.noise)) {
    fail("gaussian classes: noise must be a finite number >= 0, got " + std::to_string(o.noise));
  }
  std::vector<double> means(static_cast<std::size_t>(o.classes * o.features));
  for (auto& m : means) m = gen.normal();
  auto draw = [&](std::int64_t per_class, Tensor& x, Tensor& y) {
    std::vector<double> xs;
    std::vector<std::int64_t> ys;
    xs.reserve(static_cast<std::size_t>(o.classes * per_class * o.features));
    for (std::int64_t c = 0; c < o.classes; ++c) {
      for (std::int64_t r = 0; r < per_class; ++r) {
        for (std::int64_t f = 0; f < o.features; ++f) {
          xs.push_back(means[static_cast<std::size_t>(c * o.features + f)] + o.noise * gen.normal());
        }
        ys.push_back(c);
      }
    }
    x = Tensor::from_vector(xs, Shape{o.classes * per_class, o.features}, o.dtype).to(o.device);
    y = Tensor::indices(ys).to(o.device);
  };
  Task t;
  draw(o.support_per_class, t.support_x, t.support_y);
  draw(o.query_per_class, t.query_x, t.query_y);
  t.kind = TaskKind::classification;
  t.num_classes = o.classes;
  t.family = "gaussian-classes";
  return t;
}

TaskBatch sample_gaussian_classes_batch(Generator& gen, std::int64_t tasks, const GaussianClassesOptions& options) {
  if (tasks < 1) fail("gaussian classes: the batch needs >= 1 task, got " + std::to_string(tasks));
  TaskBatch batch;
  for (std::int64_t i = 0; i < tasks; ++i) batch.push_back(sample_gaussian_classes(gen, options));
  return batch;
}

}  // namespace metatape::tasks
