// The one interface every meta-learner implements (MAML and its variants, Meta-SGD, Reptile, ANIL,
// Prototypical Networks, Matching Networks; see meta/learners.h for their options and factories).
//
// - meta_train_step: one outer update from a batch of tasks (support and query sets). The learner
//   owns its meta-parameters and its outer optimizer (any nn::Optimizer). Each task's inner-loop tape
//   is released once its contribution to the outer gradient has been accumulated. No value is read
//   back to the host inside a step unless options.metrics is set.
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

  virtual StepMetrics meta_train_step(const tasks::TaskBatch& batch, const StepOptions& options = {}) = 0;
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
  // The metrics of a step that has just been counted in meta_steps_: means over the batch of the
  // summed query and support losses (read back to the host here, only when options.metrics is set)
  // and of the summed accuracy (classification batches only).
  StepMetrics step_metrics(const StepOptions& options, const tasks::TaskBatch& batch, const Tensor& query_sum,
                           const Tensor& support_sum, double accuracy_sum, double grad_norm) const;

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
