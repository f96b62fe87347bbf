// A few-shot task: support and query tensors plus metadata. Produced by tasks/ (task families, the
// sinusoid benchmark), consumed by meta/ and eval/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace metatape::tasks {

enum class TaskKind {
  classification,  // y: i64 class labels (rows); num_classes > 0
  regression,      // y: float (rows, outputs)
  portfolio,       // y: float (rows, assets) realised next-period asset returns; the model outputs
                   // weights and the loss is the negative Sharpe ratio of the weighted returns
};

struct Task {
  Tensor support_x;  // (support rows, features)
  Tensor support_y;
  Tensor query_x;  // (query rows, features)
  Tensor query_y;
  TaskKind kind = TaskKind::regression;
  std::int64_t num_classes = 0;

  // Metadata. Times are unix milliseconds of the first and last rows' decision times (0 when the task
  // has no time axis, e.g. sinusoids). Support always ends, plus the embargo, before query starts.
  std::string family;
  std::vector<std::string> symbols;
  std::int64_t support_begin_ms = 0, support_end_ms = 0;
  std::int64_t query_begin_ms = 0, query_end_ms = 0;
  double difficulty = 0.0;  // family-specific, documented with the family; higher is harder
  double quality = 1.0;     // in [0, 1], documented with the sampler
};

using TaskBatch = std::vector<Task>;

}  // namespace metatape::tasks
