// Reptile: first-order by construction; each task's inner loop runs on fresh leaves with no history,
// so its tape is released step by step.
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/algorithm.h"
#include "meta/learners.h"
#include "meta/task_rows.h"

namespace metatape::meta {
namespace {

class Reptile final : public Learner {
 public:
  Reptile(std::shared_ptr<const nn::Model> model, nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
          ReptileOptions options)
      : model_(std::move(model)), optimizer_(std::move(outer)), options_(options) {
    if (!model_) fail("reptile: no model given");
    if (!optimizer_) fail("reptile: no outer optimizer given");
    if (options_.inner_steps < 1) fail("reptile: inner_steps must be >= 1");
    if (!(options_.epsilon > 0.0)) fail("reptile: epsilon must be positive");
    meta_ = init;
    meta_.requires_grad_();
  }

  std::string name() const override { return "reptile"; }
  int default_adapt_steps() const override { return options_.inner_steps; }
  nn::ParameterList& meta_parameters() override { return meta_; }
  nn::Optimizer& optimizer() override { return *optimizer_; }
  std::string config_json() const override {
    return nlohmann::json{{"inner_steps", options_.inner_steps}, {"inner_lr", options_.inner_lr},
                          {"inner_adam", options_.inner_adam},   {"epsilon", options_.epsilon},
                          {"decay_steps", options_.decay_steps}, {"use_query_in_inner", options_.use_query_in_inner},
                          {"model", model_->describe()}}
        .dump();
  }

  MetaGradient meta_gradient(const tasks::TaskBatch& batch, const StepOptions& options) override {
    if (batch.empty()) fail("reptile: meta_gradient got an empty task batch");
    // This process's share of the tasks, one row each (the adapted parameters and the two losses);
    // summed over the whole batch in task order (meta/task_rows.h).
    TaskRows rows(batch, meta_.tensors(), 2);
    for (std::int64_t k = rows.share().begin; k < rows.share().end; ++k) {
      const tasks::Task& task = batch[static_cast<std::size_t>(k)];
      tasks::Task inner = task;
      if (options_.use_query_in_inner) {
        NoGradGuard no_grad;
        inner.support_x = concat({task.support_x, task.query_x}, 0);
        inner.support_y = concat({task.support_y, task.query_y}, 0);
      }
      Tensor support_loss, query_loss;
      if (options.metrics) {
        NoGradGuard no_grad;
        support_loss = task_loss(task, model_->forward(meta_, task.support_x), task.support_y);
      }
      const nn::ParameterList phi = run_inner(inner, options_.inner_steps);
      NoGradGuard no_grad;
      double task_accuracy = 0.0;
      if (options.metrics) {
        const Tensor out = model_->forward(phi, task.query_x);
        query_loss = task_loss(task, out, task.query_y);
        if (task.kind == tasks::TaskKind::classification) task_accuracy = accuracy(out, task.query_y);
      }
      rows.add(phi.tensors(), {support_loss, query_loss}, task_accuracy);
    }
    const TaskRows::Sums sums = rows.sum();
    const double inv = 1.0 / static_cast<double>(batch.size());
    std::vector<Tensor> pseudo(meta_.size());
    {
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < meta_.size(); ++i) {
        pseudo[i] = sub(meta_[i].detach(), affine(sums.tensors[i], inv, 0.0));
      }
    }
    MetaGradient out;
    out.metrics = step_metrics(options, batch, sums.scalars[1], sums.scalars[0], sums.host, pseudo);
    out.grads = std::move(pseudo);
    return out;
  }

  void prepare_outer_step() override { optimizer_->set_lr(reptile_epsilon(options_, meta_steps_)); }

  nn::ParameterList adapt(const tasks::Task& task, int steps) override {
    return run_inner(task, steps < 0 ? options_.inner_steps : steps);
  }

  Tensor predict(const nn::ParameterList& adapted, const Tensor& x) override { return model_->forward(adapted, x); }

 private:
  // k steps of the inner optimizer (SGD with inner_lr, or Adam with betas (0, 0.999)) from the
  // current meta-parameters; a fresh optimizer per task. Returns leaves with no history.
  nn::ParameterList run_inner(const tasks::Task& task, int steps) {
    nn::ParameterList phi = meta_.clone(true);
    nn::OptimizerOptions o;
    o.lr = options_.inner_lr;
    o.beta1 = 0.0;
    o.beta2 = 0.999;
    const auto inner = options_.inner_adam ? nn::make_adam(o) : nn::make_sgd(o);
    for (int s = 0; s < steps; ++s) {
      std::vector<Tensor> g;
      {
        TapeScope scope;
        const Tensor loss = task_loss(task, model_->forward(phi, task.support_x), task.support_y);
        g = grad({loss}, phi.tensors());
      }
      inner->step(phi, g);
    }
    return phi.detached();
  }

  std::shared_ptr<const nn::Model> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  ReptileOptions options_;
  nn::ParameterList meta_;
};

}  // namespace

std::unique_ptr<Learner> make_reptile(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                      std::unique_ptr<nn::Optimizer> outer, ReptileOptions options) {
  return std::make_unique<Reptile>(std::move(model), std::move(init), std::move(outer), options);
}

}  // namespace metatape::meta
