#include "tasks/sinusoid.h"

#include <cmath>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace metatape::tasks {

Task sample_sinusoid(Generator& gen, const SinusoidOptions& o) {
  if (o.support_rows < 1 || o.query_rows < 1) {
    fail("sinusoid: support_rows and query_rows must be >= 1, got " + std::to_string(o.support_rows) + " and " +
         std::to_string(o.query_rows));
  }
  if (!(o.amplitude_lo <= o.amplitude_hi) || !(o.phase_lo <= o.phase_hi) || !(o.x_lo < o.x_hi)) {
    fail("sinusoid: each range needs lo <= hi (and x_lo < x_hi)");
  }
  const double amplitude = gen.uniform(o.amplitude_lo, o.amplitude_hi);
  const double phase = gen.uniform(o.phase_lo, o.phase_hi);
  auto draw = [&](std::int64_t rows, Tensor& x, Tensor& y) {
    std::vector<double> xs(static_cast<std::size_t>(rows)), ys(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) {
      xs[i] = gen.uniform(o.x_lo, o.x_hi);
      ys[i] = amplitude * std::sin(xs[i] - phase);
    }
    x = Tensor::from_vector(xs, Shape{rows, 1}, o.dtype, o.device);
    y = Tensor::from_vector(ys, Shape{rows, 1}, o.dtype, o.device);
  };
  Task task;
  draw(o.support_rows, task.support_x, task.support_y);
  draw(o.query_rows, task.query_x, task.query_y);
  task.kind = TaskKind::regression;
  task.family = "sinusoid";
  task.difficulty = o.amplitude_hi > 0.0 ? amplitude / o.amplitude_hi : 0.0;
  return task;
}

TaskBatch sample_sinusoid_batch(Generator& gen, std::int64_t tasks, const SinusoidOptions& options) {
  if (tasks < 1) fail("sinusoid: a batch needs at least one task, got " + std::to_string(tasks));
  TaskBatch batch;
  batch.reserve(static_cast<std::size_t>(tasks));
  for (std::int64_t t = 0; t < tasks; ++t) batch.push_back(sample_sinusoid(gen, options));
  return batch;
}

}  // namespace metatape::tasks
