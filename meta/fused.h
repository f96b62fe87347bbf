// The fused executor of the gradient-based algorithms (meta/algorithm.h) for MLP learners: a
// meta-batch's meta-gradient as kernels::fused_meta_gradient calls (one per thread's share of the
// tasks on the CPU, one launch on CUDA) instead of the tape. MAML (second and first order), MAML++
// (multi-step loss, per-layer per-step learned rates, derivative-order annealing), Meta-SGD
// (alpha_l2 included) and ANIL (the head adapts in the kernel; the features' gradients the kernel
// returns go through the body on the tape). recompute_inner maps to the kernel's checkpointing
// (checkpoint_every = ceil(sqrt(inner_steps))). The tape stays the reference; tests/meta/
// fused_dispatch_test.cpp holds the two equal.
//
// Meta-parameter layout (as the learners): the MLP's 2L parameters, then the learned rates:
// per_layer_step rank-0 "inner_lr.<name>.<step>" (adapted tensor major, step minor), per_parameter
// one parameter-shaped "alpha.<name>" per adapted tensor.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/fused_adapt.h"
#include "meta/algorithm.h"
#include "meta/batched.h"
#include "nn/mlp.h"
#include "nn/parameters.h"

namespace metatape::meta {

kernels::FusedActivation fused_activation_of(nn::Activation activation);

// Whether fused_meta_gradient runs this algorithm for `model` on these tasks: false, with `why`
// naming the reason and what to do ("the model is not an MLP", "portfolio tasks have no fused loss",
// "tasks 0 and 3 have different support sizes", the kernel's own limits, "fused is off"...).
bool fused_meta_gradient_supported(const GradientAlgorithm& algorithm, const nn::Model& model,
                                   const tasks::TaskBatch& batch, std::string* why = nullptr);
bool fused_meta_gradient_supported(const GradientAlgorithm& algorithm, const nn::Mlp& mlp, const StackedTasks& tasks,
                                   std::string* why = nullptr);

struct FusedStep {
  std::vector<Tensor> grads;        // per meta-parameter: mean over tasks of d(outer)/d(meta), penalty included
  Tensor support_loss, query_loss;  // rank 0: means over tasks of L_S(theta_0) and L_Q(theta_K)
  Tensor query_out;                 // (T, m, out): the adapted models' outputs on the query rows
};

// Data parallelism (meta/task_rows.h): `tasks` are this process's share of the batch, and
// gather(rows) turns this call's per-task rows (tasks, width) into the whole batch's rows in task order
// (dist::Communicator::all_gather_rows); the means are then over the whole batch, in one fixed-order
// reduction, so every process gets the same result as one process with the whole batch. Empty: the
// tasks are the whole batch. ANIL's body gradient is per-task rows too (per-task copies of the body).
using TaskRowGather = std::function<Tensor(const Tensor& rows)>;

// The meta-step after `meta_steps` completed steps (MAML++'s schedules). `meta` as laid out above;
// threads >= 1 splits the tasks on the CPU. Throws when not supported (with the reason). FusedStep's
// query_out holds this call's tasks only.
FusedStep fused_meta_gradient(const GradientAlgorithm& algorithm, std::int64_t meta_steps, const nn::Mlp& mlp,
                              const nn::ParameterList& meta, const StackedTasks& tasks, int threads = 1,
                              const TaskRowGather& gather = {});

}  // namespace metatape::meta
