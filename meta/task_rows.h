// A meta-batch's per-task contributions, computed by each process for its share of the tasks and
// summed in task order over the whole batch (data parallelism, dist/communicator.h).
//
// Every learner's meta_gradient is a sum over tasks: the tape learners' per-task outer gradients,
// Reptile's adapted parameters, the metric learners' query-loss gradients, plus the metric sums. Here
// each task's contribution is one row: its tensors flattened in order (an undefined tensor counts as
// zeros), then its scalars; the rows of this process's share are gathered from every process into a
// (tasks, width) matrix in task order and reduced by one column sum, which is the same computation on
// every process and for every process count: a meta-step is bit-identical under `mpirun -np N` and in
// one process. Host values (classification accuracy) are gathered and summed in task order the same way.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/tensor.h"
#include "dist/communicator.h"
#include "tasks/task.h"

namespace metatape::meta {

class TaskRows {
 public:
  // `like`: the tensors of a row (shapes, dtype and device of the sums), `scalars`: the number of
  // scalar columns after them. Uses dist::world() unless `comm` is given.
  TaskRows(const tasks::TaskBatch& batch, const std::vector<Tensor>& like, int scalars,
           const dist::Communicator* comm = nullptr);

  // The tasks of the batch this process computes, in order: batch[share().begin .. share().end).
  dist::Share share() const { return share_; }

  // The row of the next task of the share: one tensor per `like` entry (undefined: zeros), `scalars`
  // rank-0 tensors (undefined: 0), one host value.
  void add(const std::vector<Tensor>& tensors, const std::vector<Tensor>& scalars, double host_value = 0.0);

  struct Sums {
    std::vector<Tensor> tensors;  // shaped as `like`: sums over all tasks of the batch
    std::vector<Tensor> scalars;  // rank 0
    double host = 0.0;            // the host values summed in task order
  };
  // Collective: every process calls it once after adding its share's rows.
  Sums sum() const;

 private:
  const dist::Communicator& comm_;
  std::int64_t tasks_ = 0;
  dist::Share share_;
  std::vector<Shape> shapes_;
  DType dtype_;
  Device device_;
  std::int64_t width_ = 0;
  int scalars_ = 0;
  std::vector<Tensor> rows_;
  std::vector<double> host_;
};

}  // namespace metatape::meta
