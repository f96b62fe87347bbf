// The MAML paper's sinusoid regression tasks (Finn et al. 2017; workload W2 in BENCHMARKS.md):
// y = A sin(x - phi), A ~ U[amplitude_lo, amplitude_hi), phi ~ U[phase_lo, phase_hi),
// x ~ U[x_lo, x_hi), support and query drawn independently from the same task.
// Task fields: kind regression, family "sinusoid", x and y of shape (rows, 1), no time axis,
// difficulty = A / amplitude_hi (larger amplitudes have larger losses).
#pragma once

#include <cstdint>

#include "autograd/random.h"
#include "tasks/task.h"

namespace metatape::tasks {

struct SinusoidOptions {
  std::int64_t support_rows = 10;  // K
  std::int64_t query_rows = 10;
  double amplitude_lo = 0.1, amplitude_hi = 5.0;
  double phase_lo = 0.0, phase_hi = 3.141592653589793;
  double x_lo = -5.0, x_hi = 5.0;
  DType dtype = DType::f32;
  Device device = Device::cpu;
};

// Draws A, phi, then the support xs, then the query xs from `gen` (in that order).
Task sample_sinusoid(Generator& gen, const SinusoidOptions& options = {});
TaskBatch sample_sinusoid_batch(Generator& gen, std::int64_t tasks, const SinusoidOptions& options = {});

}  // namespace metatape::tasks
