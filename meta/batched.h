// Task-batched meta-learning steps for MLP learners: the meta-batch is a leading dimension through
// the whole inner loop and the outer loss, so a meta-batch of T tasks costs one strided-batched GEMM
// per layer and one elementwise kernel per op instead of T of each. The same maths as the per-task
// loop of meta/gradient_learner.cpp and meta/reptile.cpp (tested equal in tests/speed/).
//
// Layouts:
// - StackedTasks: support_x (T, n, in), query_x (T, m, in); classification labels i64 (T, n) and
//   (T, m); regression targets (T, n, out) and (T, m, out). Every task of a batch has the same row
//   counts.
// - Per-task ("batched") parameters: weights (T, out, in), biases (T, 1, out), in the model's order
//   ("layer<l>.weight", "layer<l>.bias"). Shared parameters keep their own shapes (out, in) and (out).
// - The per-task loss sum: classification T * cross_entropy over the T*n flattened rows, regression
//   T * mse over all elements; each task's gradient w.r.t. its own parameter slice is then exactly its
//   own loss gradient. The outer loss is the plain mean over tasks.
//
// Fast paths:
// - fused (options.fused): MAML, FOMAML, Meta-SGD and ANIL run on the fused meta-gradient
//   (meta/fused.h: the whole meta-gradient in kernels::fused_meta_gradient calls, options.threads
//   on the CPU) when meta::fused_meta_gradient_supported says yes; adapt and Reptile's inner loop run
//   on kernels::fused_adapt (one CUDA launch) where kernels::fused_adapt_supported says yes;
//   otherwise the batched tape path below.
// - chunks and threads: the batch is cut into contiguous chunks of options.chunk tasks (CPU default
//   from cpu_chunk_bytes: one chunk's per-task tensors fit in L2; a whole W1 meta-batch does not),
//   run one after another; options.threads > 1 (CPU only) runs the chunks on that many threads,
//   each with its own tape and its own detached leaf handles. Chunk results are combined with
//   weights T_chunk / T, so the result equals the one-chunk one up to rounding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "meta/learners.h"
#include "nn/mlp.h"
#include "nn/parameters.h"
#include "tasks/task.h"

namespace metatape::meta {

enum class BatchedAlgorithm { maml, fomaml, meta_sgd, reptile, anil };
// "maml", "fomaml", "meta-sgd", "reptile", "anil"; throws listing the choices.
BatchedAlgorithm parse_batched_algorithm(const std::string& name);

struct BatchedOptions {
  BatchedAlgorithm algorithm = BatchedAlgorithm::maml;
  int inner_steps = 1;
  double inner_lr = 0.01;           // maml, fomaml, anil, reptile
  bool first_order = false;         // meta-sgd and anil: the learners' first_order option
  double alpha_l2 = 0.0;            // meta-sgd: alpha_l2 * sum(alpha^2) added to the outer loss
  bool use_query_in_inner = false;  // reptile: the inner loop also trains on the query rows
  bool fused = true;                // use the fused kernels where they apply (above)
  int threads = 1;                  // CPU only; >= 1
  // Tasks per sequential chunk; 0 = automatic (CUDA: the whole batch; CPU: as many tasks as fit
  // cpu_chunk_bytes of per-task parameters and activations, so a chunk stays in the L2 cache).
  int chunk = 0;
};

// Measured on the 2-core development machine (2 MiB L2 per core), W1 MAML meta-batch 32: chunks of
// 2 tasks 22.9 ms, 4 tasks 25.8 ms, 8 tasks 27.1 ms, all 32 36 ms (W1: 168 KB per task by the
// estimate below, so 2 tasks per chunk); W2 (14 KB per task)
// runs best as one chunk of 25.
constexpr std::size_t cpu_chunk_bytes = 400 * 1024;

struct StackedTasks {
  Tensor support_x, support_y, query_x, query_y;
  tasks::TaskKind kind = tasks::TaskKind::regression;
  std::int64_t num_classes = 0;
  std::int64_t tasks() const { return support_x.dim(0); }
};

// Stacks a batch (same kind, same row counts and widths; throws naming the first task that differs)
// onto `device`. Portfolio tasks are refused (the batched path has no batched Sharpe loss).
StackedTasks stack_tasks(const tasks::TaskBatch& batch, Device device);
// Tasks [begin, end) of a stacked batch (copies).
StackedTasks slice_tasks(const StackedTasks& tasks, std::int64_t begin, std::int64_t end);

// theta (out, in) -> (T, out, in); (out) -> (T, 1, out). Differentiable (the gradient sums over T).
Tensor expand_tasks(const Tensor& theta, std::int64_t tasks);

// Layers [first, last) of the MLP on (T, rows, in) input with shared or per-task parameters (any
// mix; `params` has the model's 2 * layers() entries, or the entries of layers [first, last)).
Tensor batched_forward(const nn::Mlp& mlp, const std::vector<Tensor>& params, const Tensor& x, std::size_t first,
                       std::size_t last);

// T * (mean loss per task) summed: see the layout note above. output (T, rows, out).
Tensor batched_loss_sum(const StackedTasks& tasks, const Tensor& output, const Tensor& y);

struct BatchedStep {
  // One gradient per meta-parameter, same order and shapes: the mean over tasks of the outer
  // gradient (maml, fomaml, meta-sgd, anil) or Reptile's pseudo-gradient theta - mean_t(phi_t).
  std::vector<Tensor> grads;
  // Mean over tasks of the query loss at the adapted parameters (rank 0, on the device; not read
  // back). For Reptile: the query loss after adaptation as well.
  Tensor query_loss;
};

// The meta-gradient of one meta-step. `meta` holds the learner's meta-parameters: the MLP's
// parameters, followed for meta-sgd by "alpha.<name>" per parameter (meta/learners.h); they need
// not require grad (the step differentiates its own detached handles, whatever the grad mode).
// Nothing is left on the caller's tape; no host synchronisation.
BatchedStep batched_meta_gradient(const nn::Mlp& mlp, const nn::ParameterList& meta, const StackedTasks& tasks,
                                  const BatchedOptions& options);

// Adapts every task from the MLP parameters `params` (shared shapes) with `steps` SGD steps of rate
// `lr`, or per-parameter rates `rates` (Meta-SGD; one tensor per parameter, parameter-shaped) when
// given. Returns per-task parameters (layout above) with no history. Uses fused_adapt when `fused`
// and supported.
std::vector<Tensor> batched_adapt(const nn::Mlp& mlp, const std::vector<Tensor>& params, const StackedTasks& tasks,
                                  int steps, double lr, const std::vector<Tensor>& rates = {}, bool fused = true);

// The model's parameters as one flat row (the kernels/fused_adapt.h layout), and back: `flat`
// (T, P) split into per-task parameters.
Tensor flatten_parameters(const std::vector<Tensor>& params);
std::vector<Tensor> unflatten_parameters(const nn::Mlp& mlp, const Tensor& flat);

// A meta::Learner whose meta_train_step runs the batched path above: kind "maml", "fomaml",
// "meta-sgd", "reptile" or "anil", with the options of the per-task learners (meta/learners.h;
// MAML++ options, recompute_inner, Reptile's inner Adam and portfolio tasks are refused) and the same
// meta-parameter names and name(). adapt() runs the fused kernel where it
// applies (ANIL adapts its head on the tape). StepMetrics are computed when asked (one extra
// first-order adaptation for the accuracy).
std::unique_ptr<Learner> make_batched_learner(const std::string& kind, std::shared_ptr<const nn::Mlp> model,
                                              nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                                              const LearnerOptions& options, BatchedOptions batched = {});

}  // namespace metatape::meta
