// Optimizers (SGD with momentum, Adam, AdamW), clipping by global norm, gradient accumulation and
// learning-rate schedules. Optimizers are functional over a ParameterList: step(params, grads) updates
// the parameter tensors' values in place (not recorded) from explicitly given gradients, so the
// gradients may come from grad() (meta-gradients) or from Tensor::grad(). State is per parameter
// index and is checked against the list's layout on every step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "nn/parameters.h"

namespace metatape::nn {

// lr(step) for step = 0, 1, ... (the number of updates already applied).
struct LrSchedule {
  enum class Kind { constant, step, cosine };
  Kind kind = Kind::constant;
  std::int64_t step_size = 1000;  // step: multiply by gamma every step_size updates
  double gamma = 0.1;
  std::int64_t total_steps = 0;  // cosine: anneal from lr to min_lr over total_steps (after warm-up)
  double min_lr = 0.0;
  std::int64_t warmup_steps = 0;  // linear warm-up from lr / warmup_steps to lr, any kind
  double lr_at(double base_lr, std::int64_t step) const;
};

struct OptimizerOptions {
  double lr = 1e-3;
  // SGD
  double momentum = 0.0;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // SGD and Adam: L2 added to the gradient; AdamW: decoupled decay lr * weight_decay * p.
  double weight_decay = 0.0;
  // > 0: gradients are scaled so their global L2 norm (over all parameters) is at most this.
  double clip_norm = 0.0;
  // > 1: step() sums gradients and applies one update (with their mean) every N calls.
  std::int64_t accumulation_steps = 1;
  LrSchedule schedule;
};

class Optimizer {
 public:
  explicit Optimizer(OptimizerOptions options);
  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;  // "sgd", "adam", "adamw"

  // Applies (or accumulates) one update. grads[i] is d loss / d params[i] (same shape and dtype);
  // an undefined gradient counts as zero. Returns true when an update was applied.
  bool step(ParameterList& params, const std::vector<Tensor>& grads);

  // Updates applied so far (the schedule's step).
  std::int64_t steps_taken() const { return steps_; }
  double current_lr() const { return options_.schedule.lr_at(options_.lr, steps_); }
  // Global L2 norm of the last gradient applied, before clipping (reads one value back to the host).
  double last_grad_norm() const;
  const OptimizerOptions& options() const { return options_; }
  void set_lr(double lr) { options_.lr = lr; }

  // Everything a resumed run needs, as named tensors ("step", "<role>.<param index>", ...): loading it
  // into a fresh optimizer of the same kind and options continues bit-identically.
  ParameterList state() const;
  void load_state(const ParameterList& state);

 protected:
  // Applies one update with gradient g (already clipped, averaged and weight-decayed as the kind
  // wants) and learning rate lr. index is the parameter's position (for state).
  virtual void update(std::size_t index, Tensor& param, const Tensor& grad, double lr) = 0;
  virtual void save_slots(ParameterList& out) const = 0;
  virtual void load_slots(const ParameterList& in) = 0;
  OptimizerOptions options_;
  std::int64_t steps_ = 0;

 private:
  std::vector<Tensor> accumulated_;
  std::int64_t pending_ = 0;
  std::vector<Tensor> last_grads_;  // the last applied gradient, before clipping
};

std::unique_ptr<Optimizer> make_sgd(OptimizerOptions options);
std::unique_ptr<Optimizer> make_adam(OptimizerOptions options);
std::unique_ptr<Optimizer> make_adamw(OptimizerOptions options);
// "sgd", "adam" or "adamw"; throws listing the choices.
std::unique_ptr<Optimizer> make_optimizer(const std::string& kind, OptimizerOptions options);

// Global L2 norm over all tensors (a rank-0 tensor; no host read).
Tensor global_norm(const std::vector<Tensor>& tensors);
// Scales every tensor by min(1, max_norm / (norm + 1e-6)); returns the new list (no host read).
std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double max_norm);

}  // namespace metatape::nn
