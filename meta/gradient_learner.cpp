// MAML (second and first order, MAML++ options), Meta-SGD and ANIL: one inner-loop learner that
// differs in how the inner learning rate is held and which parameters adapt.
//
// Meta-parameter layout: the model's parameters first (in the model's order), then the learned inner
// learning rates: "inner_lr.<name>.<step>" (rank 0, MAML++) or "alpha.<name>" (parameter-shaped,
// Meta-SGD). Per task, a TapeScope holds the inner loop and the outer loss; it is released right
// after that task's outer gradient is accumulated.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learners.h"

namespace metatape::meta {
namespace {

enum class LrMode { fixed, per_layer_step, per_parameter };

struct GradientConfig {
  std::string name;
  int inner_steps = 1;
  double inner_lr = 0.01;
  bool first_order = false;
  bool multi_step_loss = false;
  std::int64_t msl_anneal_steps = 1000;
  std::int64_t first_order_until = 0;
  LrMode lr_mode = LrMode::fixed;
  double alpha_init = 0.01;
  double alpha_l2 = 0.0;
  std::size_t head_first_layer = 0;  // ANIL: index of the first layer that adapts; 0 = all layers
  nlohmann::json json;
};

class GradientLearner final : public Learner {
 public:
  GradientLearner(std::shared_ptr<const nn::Model> model, std::shared_ptr<const nn::Mlp> mlp,
                  nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer, GradientConfig config)
      : model_(std::move(model)), mlp_(std::move(mlp)), optimizer_(std::move(outer)),
        config_(std::move(config)) {
    if (!model_) fail(config_.name + ": no model given");
    if (!optimizer_) fail(config_.name + ": no outer optimizer given");
    if (config_.inner_steps < 1) {
      fail(config_.name + ": inner_steps must be >= 1, got " + std::to_string(config_.inner_steps));
    }
    if (init.empty()) fail(config_.name + ": the initial parameter list is empty");
    model_count_ = init.size();
    model_layout_ = init.detached();
    meta_ = init;
    meta_.requires_grad_();
    if (config_.head_first_layer > 0) {
      for (std::size_t i = 0; i < model_count_; ++i) {
        if (i >= 2 * config_.head_first_layer) adapted_.push_back(i);
      }
    } else {
      for (std::size_t i = 0; i < model_count_; ++i) adapted_.push_back(i);
    }
    if (config_.lr_mode == LrMode::per_layer_step) {
      for (std::size_t i : adapted_) {
        for (int s = 0; s < config_.inner_steps; ++s) {
          Tensor lr = Tensor::scalar(config_.inner_lr, init[i].dtype(), init[i].device());
          lr.requires_grad_();
          meta_.add("inner_lr." + init.name(i) + "." + std::to_string(s), lr);
        }
      }
    } else if (config_.lr_mode == LrMode::per_parameter) {
      for (std::size_t i : adapted_) {
        Tensor a = Tensor::full(init[i].shape(), config_.alpha_init, init[i].dtype(), init[i].device());
        a.requires_grad_();
        meta_.add("alpha." + init.name(i), a);
      }
    }
  }

  std::string name() const override { return config_.name; }
  int default_adapt_steps() const override { return config_.inner_steps; }
  nn::ParameterList& meta_parameters() override { return meta_; }
  nn::Optimizer& optimizer() override { return *optimizer_; }
  std::string config_json() const override { return config_.json.dump(); }

  StepMetrics meta_train_step(const tasks::TaskBatch& batch, const StepOptions& options) override {
    if (batch.empty()) fail(config_.name + ": meta_train_step got an empty task batch");
    const bool second = !config_.first_order && meta_steps_ >= config_.first_order_until;
    const std::vector<double> weights = step_weights();
    const int steps = config_.inner_steps;
    std::vector<Tensor> total(meta_.size());
    Tensor query_sum, support_sum;
    double accuracy_sum = 0.0;
    for (const tasks::Task& task : batch) {
      TapeScope scope;
      const Tensor fs = features(task.support_x, meta_);
      const Tensor fq = features(task.query_x, meta_);
      std::vector<Tensor> phi(meta_.tensors().begin(), meta_.tensors().begin() + model_count_);
      Tensor outer, last_query, last_output;
      GradOptions inner;
      inner.create_graph = second;
      inner.retain_graph = true;
      for (int s = 0; s < steps; ++s) {
        const Tensor loss = task_loss(task, head(phi, fs), task.support_y);
        if (s == 0 && options.metrics) accumulate(support_sum, loss.detach());
        std::vector<Tensor> wrt;
        for (std::size_t i : adapted_) wrt.push_back(phi[i]);
        const std::vector<Tensor> g = grad({loss}, wrt, inner);
        for (std::size_t k = 0; k < adapted_.size(); ++k) {
          const std::size_t i = adapted_[k];
          phi[i] = inner_update(phi[i], second ? g[k] : g[k].detach(), k, s, meta_);
        }
        if (config_.multi_step_loss || s == steps - 1) {
          last_output = head(phi, fq);
          last_query = task_loss(task, last_output, task.query_y);
          const double w = weights[static_cast<std::size_t>(s)];
          if (w != 0.0) {
            const Tensor term = w == 1.0 ? last_query : affine(last_query, w, 0.0);
            outer = outer.defined() ? add(outer, term) : term;
          }
        }
      }
      if (config_.alpha_l2 > 0.0 && config_.lr_mode == LrMode::per_parameter) {
        // alpha_l2 * sum(alpha^2) is added to every task's loss; the batch mean below leaves it
        // counted once per meta-step.
        for (std::size_t i = model_count_; i < meta_.size(); ++i) {
          outer = add(outer, affine(sum(square(meta_[i])), config_.alpha_l2, 0.0));
        }
      }
      GradOptions outer_options;
      outer_options.allow_unused = true;
      const std::vector<Tensor> g = grad({outer}, meta_.tensors(), outer_options);
      for (std::size_t i = 0; i < g.size(); ++i) accumulate(total[i], g[i]);
      if (options.metrics) {
        accumulate(query_sum, last_query.detach());
        if (task.kind == tasks::TaskKind::classification) {
          accuracy_sum += accuracy(last_output.detach(), task.query_y);
        }
      }
    }
    const double inv = 1.0 / static_cast<double>(batch.size());
    {
      NoGradGuard no_grad;
      for (auto& t : total) t = affine(t, inv, 0.0);
    }
    optimizer_->step(meta_, total);
    ++meta_steps_;
    return step_metrics(options, batch, query_sum, support_sum, accuracy_sum,
                        optimizer_->last_grad_norm());
  }

  nn::ParameterList adapt(const tasks::Task& task, int steps) override {
    nn::ParameterList out;
    trace(task, steps < 0 ? config_.inner_steps : steps, [&](int, const nn::ParameterList& p) { out = p; });
    return out;
  }

  Tensor predict(const nn::ParameterList& adapted, const Tensor& x) override {
    return model_->forward(adapted, x);
  }

  std::vector<Evaluation> evaluate(const tasks::Task& task, const std::vector<int>& steps) override {
    int most = 0;
    for (int s : steps) {
      if (s < 0) fail("evaluate: step counts must be >= 0, got " + std::to_string(s));
      most = std::max(most, s);
    }
    std::vector<Evaluation> out(steps.size());
    trace(task, most, [&](int done, const nn::ParameterList& p) {
      for (std::size_t k = 0; k < steps.size(); ++k) {
        if (steps[k] != done) continue;
        NoGradGuard no_grad;
        const Tensor output = predict(p, task.query_x);
        out[k].steps = done;
        out[k].loss = task_loss(task, output, task.query_y).item();
        if (task.kind == tasks::TaskKind::classification) out[k].accuracy = accuracy(output, task.query_y);
      }
    });
    return out;
  }

 private:
  static void accumulate(Tensor& sum_so_far, const Tensor& value) {
    NoGradGuard no_grad;
    sum_so_far = sum_so_far.defined() ? add(sum_so_far, value) : value;
  }

  // MAML++ multi-step loss weights for the current meta-step; (0, .., 0, 1) without it.
  std::vector<double> step_weights() const {
    const int n = config_.inner_steps;
    std::vector<double> w(static_cast<std::size_t>(n), 0.0);
    if (!config_.multi_step_loss) {
      w.back() = 1.0;
      return w;
    }
    const double uniform = 1.0 / n;
    const double decay = uniform / static_cast<double>(std::max<std::int64_t>(1, config_.msl_anneal_steps));
    const double min_non_final = 0.03 / n;
    const double t = static_cast<double>(meta_steps_);
    for (int s = 0; s + 1 < n; ++s) w[static_cast<std::size_t>(s)] = std::max(uniform - t * decay, min_non_final);
    w.back() = std::min(uniform + t * (n - 1) * decay, 1.0 - (n - 1) * min_non_final);
    return w;
  }

  // ANIL: the body's output (computed once per task); otherwise the input itself.
  Tensor features(const Tensor& x, const nn::ParameterList& params) const {
    if (config_.head_first_layer == 0) return x;
    return mlp_->forward_layers(params, x, 0, config_.head_first_layer);
  }

  Tensor head(const std::vector<Tensor>& phi, const Tensor& f) const {
    const nn::ParameterList p = model_layout_.with_tensors(phi);
    if (config_.head_first_layer == 0) return model_->forward(p, f);
    return mlp_->forward_layers(p, f, config_.head_first_layer, mlp_->layers());
  }

  // phi - lr * g for adapted parameter number k at inner step s. `lrs` supplies learned rates.
  Tensor inner_update(const Tensor& phi, const Tensor& g, std::size_t k, int s,
                      const nn::ParameterList& lrs) const {
    switch (config_.lr_mode) {
      case LrMode::fixed: return sub(phi, affine(g, config_.inner_lr, 0.0));
      case LrMode::per_layer_step: {
        const int step = std::min(s, config_.inner_steps - 1);
        const std::size_t index = model_count_ + k * static_cast<std::size_t>(config_.inner_steps) +
                                  static_cast<std::size_t>(step);
        return sub(phi, mul(g, lrs[index]));
      }
      case LrMode::per_parameter: return sub(phi, mul(g, lrs[model_count_ + k]));
    }
    return phi;
  }

  // Adapts with plain (first-order, no history) steps and calls visit(s, params) after 0..steps
  // steps. Per-step learned rates beyond the trained count reuse the last step's rate.
  template <class Visit>
  void trace(const tasks::Task& task, int steps, Visit visit) {
    const nn::ParameterList rates = meta_.detached();
    Tensor fs;
    std::vector<Tensor> phi;
    {
      NoGradGuard no_grad;
      fs = features(task.support_x, rates);
      for (std::size_t i = 0; i < model_count_; ++i) phi.push_back(meta_[i].copy());
    }
    nn::ParameterList body_and_head = model_layout_.with_tensors(phi);
    visit(0, body_and_head);
    for (int s = 0; s < steps; ++s) {
      std::vector<Tensor> wrt;
      {
        TapeScope scope;
        for (std::size_t i : adapted_) {
          phi[i] = phi[i].detach();
          phi[i].requires_grad_();
          wrt.push_back(phi[i]);
        }
        const Tensor loss = task_loss(task, head(phi, fs), task.support_y);
        wrt = grad({loss}, wrt);
      }
      NoGradGuard no_grad;
      for (std::size_t k = 0; k < adapted_.size(); ++k) {
        const std::size_t i = adapted_[k];
        phi[i] = inner_update(phi[i].detach(), wrt[k], k, s, rates);
      }
      visit(s + 1, model_layout_.with_tensors(phi));
    }
  }

  std::shared_ptr<const nn::Model> model_;
  std::shared_ptr<const nn::Mlp> mlp_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  GradientConfig config_;
  nn::ParameterList meta_;
  nn::ParameterList model_layout_;  // names and shapes of the model's parameters
  std::size_t model_count_ = 0;
  std::vector<std::size_t> adapted_;  // indices (into the model's parameters) that adapt
};

}  // namespace

std::unique_ptr<Learner> make_maml(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, MamlOptions options) {
  GradientConfig c;
  c.name = options.first_order ? "fomaml"
           : (options.multi_step_loss || options.learn_inner_lrs || options.first_order_until > 0)
               ? "maml++"
               : "maml";
  c.inner_steps = options.inner_steps;
  c.inner_lr = options.inner_lr;
  c.first_order = options.first_order;
  c.multi_step_loss = options.multi_step_loss;
  c.msl_anneal_steps = options.msl_anneal_steps;
  c.first_order_until = options.first_order_until;
  c.lr_mode = options.learn_inner_lrs ? LrMode::per_layer_step : LrMode::fixed;
  c.json = {{"inner_steps", options.inner_steps},
            {"inner_lr", options.inner_lr},
            {"first_order", options.first_order},
            {"multi_step_loss", options.multi_step_loss},
            {"msl_anneal_steps", options.msl_anneal_steps},
            {"learn_inner_lrs", options.learn_inner_lrs},
            {"first_order_until", options.first_order_until},
            {"model", model ? model->describe() : ""}};
  return std::make_unique<GradientLearner>(model, nullptr, std::move(init), std::move(outer), c);
}

std::unique_ptr<Learner> make_meta_sgd(std::shared_ptr<const nn::Model> model,
                                       nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                                       MetaSgdOptions options) {
  GradientConfig c;
  c.name = "meta-sgd";
  c.inner_steps = options.inner_steps;
  c.first_order = options.first_order;
  c.lr_mode = LrMode::per_parameter;
  c.alpha_init = options.alpha_init;
  c.alpha_l2 = options.alpha_l2;
  c.json = {{"inner_steps", options.inner_steps},
            {"alpha_init", options.alpha_init},
            {"alpha_l2", options.alpha_l2},
            {"first_order", options.first_order},
            {"model", model ? model->describe() : ""}};
  return std::make_unique<GradientLearner>(model, nullptr, std::move(init), std::move(outer), c);
}

std::unique_ptr<Learner> make_anil(std::shared_ptr<const nn::Mlp> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, AnilOptions options) {
  if (!model) fail("anil: no model given");
  if (model->layers() < 2) fail("anil: the MLP needs at least two layers (a body and a head)");
  if (init.size() != 2 * model->layers()) {
    fail("anil: expected the MLP's " + std::to_string(2 * model->layers()) + " parameters, got " +
         std::to_string(init.size()));
  }
  GradientConfig c;
  c.name = "anil";
  c.inner_steps = options.inner_steps;
  c.inner_lr = options.inner_lr;
  c.first_order = options.first_order;
  c.head_first_layer = model->layers() - 1;
  c.json = {{"inner_steps", options.inner_steps},
            {"inner_lr", options.inner_lr},
            {"first_order", options.first_order},
            {"model", model->describe()}};
  return std::make_unique<GradientLearner>(model, model, std::move(init), std::move(outer), c);
}

}  // namespace metatape::meta
