// The one interface every meta-learner implements (MAML and its variants, Meta-SGD, Reptile, ANIL,
// Prototypical Networks, Matching Networks; see meta/learners.h for their options and factories).
//
// - meta_gradient: the outer gradient of one meta-step from a batch of tasks (support and query
//   sets), not applied: what researchers compare against other implementations. Each task's
//   inner-loop tape is released once its contribution has been accumulated. No value is read back
//   to the host unless options.metrics is set.
// - meta_train_step: one outer update: meta_gradient, then the outer optimizer (any nn::Optimizer;
//   the learner owns it and its meta-parameters) applies it, then the step is counted.
// - adapt: the few-shot adaptation a user calls: a support set in, an adapted model out. The adapted
//   model is a ParameterList with no autograd history: for gradient-based learners, the adapted
//   network parameters (same names and shapes as the initial ones); for ProtoNets, the embedding
//   parameters plus "prototypes" (classes, embedding); for Matching Nets, the embedding parameters
//   plus "support.embedding" (rows, embedding) and "support.one_hot" (rows, classes).
// - predict: the adapted model applied to query inputs: regression outputs (rows, outputs),
//   classification logits (rows, classes; log-probabilities for Matching Nets), portfolio scores
//   (rows, assets; softmax gives the weights, nn/losses.h).
// - evaluate: adapt on the support set with each requested number of inner steps and score the query
//   set (loss as the task kind defines it; accuracy for classification). Reads values to the host.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "nn/optimizer.h"
#include "nn/parameters.h"
#include "tasks/task.h"

namespace metatape::meta {

struct StepOptions {
  bool metrics = true;  // read the metrics below back to the host (one sync per step)
};

struct StepMetrics {
  bool computed = false;                 // false when options.metrics was off; the numbers below are then 0
  double query_loss = 0.0;               // mean over tasks of the query loss after adaptation (the outer loss)
  double support_loss = 0.0;             // mean over tasks of the support loss before adaptation
  std::optional<double> query_accuracy;  // classification tasks only
  double grad_norm = 0.0;                // global L2 norm of the outer gradient, before clipping
  std::int64_t step = 0;                 // meta-steps completed, this one included
};

// One meta-step's outer gradient, not applied (Learner::meta_gradient).
struct MetaGradient {
  // One per meta_parameters() entry, same order, shapes and dtypes, all defined: d(outer loss) /
  // d(meta-parameter), averaged over the batch (Reptile: its pseudo-gradient theta - mean(phi)).
  std::vector<Tensor> grads;
  // As meta_train_step reports them; step = meta_steps() (this gradient's step is not counted yet).
  StepMetrics metrics;
};

struct Evaluation {
  int steps = 0;                   // inner steps used for adaptation
  double loss = 0.0;               // query loss after adaptation
  std::optional<double> accuracy;  // classification tasks only
};

// The loss of a task's kind: mse (regression), cross-entropy on logits (classification), negative
// Sharpe (portfolio). Throws when y's dtype or shape does not fit the kind.
Tensor task_loss(const tasks::Task& task, const Tensor& output, const Tensor& y);
// Fraction of rows whose argmax matches the label (classification only; reads to the host).
double accuracy(const Tensor& logits, const Tensor& labels);

class Learner {
 public:
  virtual ~Learner() = default;
  // "maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", "protonet", "matching".
  virtual std::string name() const = 0;

  // The meta-gradient of one step at the current meta-parameters and meta_steps() (MAML++'s
  // schedules depend on it). Changes nothing in the learner.
  virtual MetaGradient meta_gradient(const tasks::TaskBatch& batch, const StepOptions& options = {}) = 0;
  // meta_gradient, then optimizer().step(meta_parameters(), grads) (after prepare_outer_step), then
  // meta_steps() + 1. The metrics' step is the new count.
  StepMetrics meta_train_step(const tasks::TaskBatch& batch, const StepOptions& options = {});
  // steps < 0: the learner's default (its training inner steps). Metric learners ignore steps.
  virtual nn::ParameterList adapt(const tasks::Task& task, int steps = -1) = 0;
  virtual Tensor predict(const nn::ParameterList& adapted, const Tensor& x) = 0;
  // The loss of predict()'s output against targets: task_loss, except for Matching Nets (the NLL of
  // their log-probabilities).
  virtual Tensor loss(const tasks::Task& task, const Tensor& output, const Tensor& y) const {
    return task_loss(task, output, y);
  }
  // One Evaluation per entry of steps (each >= 0), in the same order. The default adapts once per
  // entry; gradient-based learners adapt once to the largest count and score along the way.
  virtual std::vector<Evaluation> evaluate(const tasks::Task& task, const std::vector<int>& steps);

  virtual int default_adapt_steps() const = 0;
  // Everything the outer optimizer updates: initial parameters, and learned inner learning rates or
  // per-parameter alphas where the learner has them. Names are stable (checkpoints rely on them).
  virtual nn::ParameterList& meta_parameters() = 0;
  virtual nn::Optimizer& optimizer() = 0;
  // The learner's options as a JSON object (text), for checkpoints and reports.
  virtual std::string config_json() const = 0;

  std::int64_t meta_steps() const { return meta_steps_; }
  void set_meta_steps(std::int64_t steps) { meta_steps_ = steps; }  // when resuming

 protected:
  // Called by meta_train_step just before the outer optimizer applies a gradient (Reptile sets its
  // epsilon schedule's learning rate here).
  virtual void prepare_outer_step() {}

  // The metrics of the step meta_steps_ + 1 (not yet counted): means over the batch of the summed
  // query and support losses (read back to the host here, only when options.metrics is set), of the
  // summed accuracy (classification batches only), and the global L2 norm of `grads`.
  StepMetrics step_metrics(const StepOptions& options, const tasks::TaskBatch& batch, const Tensor& query_sum,
                           const Tensor& support_sum, double accuracy_sum, const std::vector<Tensor>& grads) const;

  std::int64_t meta_steps_ = 0;
};

}  // namespace metatape::meta

namespace metatape::meta {

// Checkpoints of a learner (nn/checkpoint.h): section "params" = meta_parameters(), "optimizer" = the
// outer optimizer's state, step = meta_steps(), the generator's state when given, and the config
// {"learner": name(), "options": config_json(), "extra": extra_config_json}. Loading refuses a file
// written by another learner kind or with other parameter names, shapes or dtypes, and restores the
// generator when both the file and the caller have one.
void save_learner(const std::string& path, Learner& learner, const Generator* generator = nullptr,
                  const std::string& extra_config_json = "{}");
void load_learner(const std::string& path, Learner& learner, Generator* generator = nullptr);

}  // namespace metatape::meta
