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
#include "meta/algorithm.h"
#include "meta/batched.h"
#include "meta/fused.h"
#include "meta/task_rows.h"
#include "meta/learners.h"

namespace metatape::meta {
namespace {

class GradientLearner final : public Learner {
 public:
  GradientLearner(std::shared_ptr<const nn::Model> model, nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                  GradientAlgorithm config, nlohmann::json json)
      : model_(std::move(model)),
        optimizer_(std::move(outer)),
        config_(std::move(config)),
        json_(std::move(json)) {
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
    const std::size_t first_adapted = config_.head_only ? model_->head_parameter_start() : 0;
    for (std::size_t i = first_adapted; i < model_count_; ++i) adapted_.push_back(i);
    if (config_.rates == InnerRates::per_layer_step) {
      for (std::size_t i : adapted_) {
        for (int s = 0; s < config_.inner_steps; ++s) {
          Tensor lr = Tensor::scalar(config_.inner_lr, init[i].dtype(), init[i].device());
          lr.requires_grad_();
          meta_.add("inner_lr." + init.name(i) + "." + std::to_string(s), lr);
        }
      }
    } else if (config_.rates == InnerRates::per_parameter) {
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
  std::string config_json() const override { return json_.dump(); }

  MetaGradient meta_gradient(const tasks::TaskBatch& batch, const StepOptions& options) override {
    if (batch.empty()) fail(config_.name + ": meta_gradient got an empty task batch");
    if (use_fused(batch)) return fused_gradient(batch, options);
    const bool second = config_.second_order(meta_steps_);
    const std::vector<double> weights = config_.query_weights(meta_steps_);
    // This process's share of the tasks, one row each; summed over the whole batch in task order.
    TaskRows rows(batch, meta_.tensors(), 2);
    for (std::int64_t k = rows.share().begin; k < rows.share().end; ++k) {
      const tasks::Task& task = batch[static_cast<std::size_t>(k)];
      const TaskGradient t = config_.recompute_inner ? task_gradient_recomputed(task, second, weights)
                                                     : task_gradient_taped(task, second, weights);
      double task_accuracy = 0.0;
      if (options.metrics && task.kind == tasks::TaskKind::classification) {
        task_accuracy = accuracy(t.query_output, task.query_y);
      }
      rows.add(t.grads, options.metrics ? std::vector<Tensor>{t.support_loss, t.query_loss} : std::vector<Tensor>{},
               task_accuracy);
    }
    const TaskRows::Sums sums = rows.sum();
    const double inv = 1.0 / static_cast<double>(batch.size());
    std::vector<Tensor> total(meta_.size());
    {
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < total.size(); ++i) total[i] = affine(sums.tensors[i], inv, 0.0);
    }
    MetaGradient out;
    out.metrics = step_metrics(options, batch, sums.scalars[1], sums.scalars[0], sums.host, total);
    out.grads = std::move(total);
    return out;
  }

  nn::ParameterList adapt(const tasks::Task& task, int steps) override {
    nn::ParameterList out;
    trace(task, steps < 0 ? config_.inner_steps : steps, [&](int, const nn::ParameterList& p) { out = p; });
    return out;
  }

  Tensor predict(const nn::ParameterList& adapted, const Tensor& x) override { return model_->forward(adapted, x); }

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
    if (!value.defined()) return;
    NoGradGuard no_grad;
    sum_so_far = sum_so_far.defined() ? add(sum_so_far, value) : value;
  }

  // Whether the fused executor runs this batch: fused_meta_gradient_supported on the whole batch. In a
  // job of several processes the tasks outside this process's share may be shells (tasks/sampler.h),
  // so each process checks its share and they agree: fused only when every share is supported and
  // every share's first task has the same kind, classes, dtype and shapes, which is the one-process
  // condition (all tasks alike, and supported).
  bool use_fused(const tasks::TaskBatch& batch) const {
    const dist::Communicator& comm = dist::world();
    if (comm.size() == 1) return fused_meta_gradient_supported(config_, *model_, batch);
    const dist::Share share = comm.share(static_cast<std::int64_t>(batch.size()));
    const tasks::TaskBatch mine(batch.begin() + share.begin, batch.begin() + share.end);
    const bool supported = !mine.empty() && fused_meta_gradient_supported(config_, *model_, mine);
    constexpr std::size_t kSignature = 4 + 4 * (1 + kernels::max_rank);
    std::vector<double> signature(kSignature, 0.0);
    if (supported) {
      const tasks::Task& t = mine.front();
      std::size_t at = 0;
      signature[at++] = 1.0;
      signature[at++] = static_cast<double>(static_cast<int>(t.kind));
      signature[at++] = static_cast<double>(t.num_classes);
      signature[at++] = static_cast<double>(static_cast<int>(t.support_x.dtype()));
      for (const Tensor* x : {&t.support_x, &t.support_y, &t.query_x, &t.query_y}) {
        signature[at++] = x->rank();
        for (int d = 0; d < kernels::max_rank; ++d) signature[at++] = d < x->rank() ? static_cast<double>(x->dim(d)) : 0.0;
      }
    }
    const std::vector<double> all = comm.all_gather(signature);
    for (int r = 0; r < comm.size(); ++r) {
      const auto first = all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(r) * kSignature);
      if (*first != 1.0 || !std::equal(first, first + static_cast<std::ptrdiff_t>(kSignature), all.begin())) return false;
    }
    return true;
  }

  // A fresh leaf holding t's values, for differentiating a recomputed piece of the graph.
  static Tensor leaf(const Tensor& t) {
    Tensor out = t.detach();
    out.requires_grad_();
    return out;
  }

  // One task's contribution: the gradient of its outer loss for every meta-parameter (in meta_'s
  // order, all defined) and, as values, its first support loss, final query loss and query output.
  struct TaskGradient {
    std::vector<Tensor> grads;
    Tensor support_loss, query_loss, query_output;
  };

  // The outer loss of one task at the adapted parameters: sum over s of weights[s - 1] * query loss at
  // phi_s (only s = inner_steps without the multi-step loss), plus the alpha regulariser.
  //
  // Taped: the whole inner loop is recorded (with its inner gradients under second order) in one
  // scope and differentiated once. Memory: every inner step's graph at once.
  TaskGradient task_gradient_taped(const tasks::Task& task, bool second, const std::vector<double>& weights) {
    const int steps = config_.inner_steps;
    TaskGradient r;
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
      if (s == 0) r.support_loss = loss.detach();
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
    if (const Tensor penalty = alpha_penalty(); penalty.defined()) outer = add(outer, penalty);
    GradOptions outer_options;
    outer_options.allow_unused = true;
    r.grads = grad({outer}, meta_.tensors(), outer_options);
    r.query_loss = last_query.detach();
    r.query_output = last_output.detach();
    return r;
  }

  // Recomputed (recompute_inner; see MamlOptions): the same gradient with the inner loop's graphs
  // built one step at a time. Forward: the inner loop runs graph-free, keeping the adapted parameters
  // at every `every`-th step (every = ceil(sqrt(S))). Backward, s = S-1 .. 0: phi_s is replayed from
  // the nearest kept step (one segment at a time, cached), step s alone is recorded (its support
  // loss, its inner gradient under second order, the update), and v_s = (d phi_{s+1}/d phi_s)^T v_{s+1}
  // (+ the multi-step query term at phi_s) is one grad() call; the learned rates' and (ANIL) the
  // features' gradients are gathered on the way. Live at once: ~2 sqrt(S) parameter copies and one
  // step's graph. Cost: about two more graph-free inner steps per step than the taped path.
  TaskGradient task_gradient_recomputed(const tasks::Task& task, bool second, const std::vector<double>& weights) {
    const int steps = config_.inner_steps;
    const int every = config_.checkpoint_every();  // recompute_inner is on here
    const std::size_t n = adapted_.size();
    const bool has_body = config_.head_only;
    const nn::ParameterList values = meta_.detached();
    TaskGradient r;
    r.grads.resize(meta_.size());

    Tensor fs, fq;  // the features as values (ANIL: the body's output; else the inputs)
    std::vector<Tensor> phi;
    {
      NoGradGuard no_grad;
      fs = features(task.support_x, values);
      fq = features(task.query_x, values);
      phi.assign(values.tensors().begin(), values.tensors().begin() + model_count_);
    }
    std::vector<std::vector<Tensor>> kept;  // phi at steps 0, every, 2 every, ...
    for (int s = 0; s < steps; ++s) {
      if (s % every == 0) kept.push_back(phi);
      const Tensor loss = plain_step(task, fs, phi, s, values);
      if (s == 0) r.support_loss = loss;
    }

    std::vector<Tensor> v(n);  // d outer / d phi_s, adapted entries
    Tensor fs_grad, fq_grad;   // d outer / d features (ANIL)
    {                          // the final query term at phi_S
      TapeScope scope;
      std::vector<Tensor> p = phi;
      std::vector<Tensor> inputs;
      for (std::size_t i : adapted_) inputs.push_back(p[i] = leaf(p[i]));
      const Tensor fq_in = has_body ? leaf(fq) : fq;
      if (has_body) inputs.push_back(fq_in);
      const Tensor output = head(p, fq_in);
      const Tensor loss = task_loss(task, output, task.query_y);
      r.query_loss = loss.detach();
      r.query_output = output.detach();
      GradOptions options;
      options.allow_unused = true;
      const std::vector<Tensor> g = grad({loss}, inputs, options, {seed(loss, weights.back())});
      for (std::size_t k = 0; k < n; ++k) v[k] = g[k];
      if (has_body) accumulate(fq_grad, g[n]);
    }

    int segment_index = -1;
    std::vector<std::vector<Tensor>> segment;  // phi at steps segment_index * every, ...
    for (int s = steps - 1; s >= 0; --s) {
      const int j = s / every;
      if (j != segment_index) {
        segment.assign(1, kept[static_cast<std::size_t>(j)]);
        for (int t = j * every; t < s; ++t) {
          std::vector<Tensor> next = segment.back();
          plain_step(task, fs, next, t, values);
          segment.push_back(std::move(next));
        }
        segment_index = j;
      }
      TapeScope scope;
      std::vector<Tensor> p = segment[static_cast<std::size_t>(s - j * every)];
      std::vector<Tensor> inputs;
      for (std::size_t i : adapted_) inputs.push_back(p[i] = leaf(p[i]));
      const Tensor fs_in = has_body ? leaf(fs) : fs;
      const Tensor fq_in = has_body ? leaf(fq) : fq;
      for (std::size_t i = model_count_; i < meta_.size(); ++i) inputs.push_back(meta_[i]);
      if (has_body) {
        inputs.push_back(fs_in);
        inputs.push_back(fq_in);
      }
      const Tensor loss = task_loss(task, head(p, fs_in), task.support_y);
      GradOptions inner;
      inner.create_graph = second;
      inner.retain_graph = true;
      std::vector<Tensor> wrt(inputs.begin(), inputs.begin() + static_cast<std::ptrdiff_t>(n));
      const std::vector<Tensor> g = grad({loss}, wrt, inner);
      std::vector<Tensor> outputs, seeds;
      for (std::size_t k = 0; k < n; ++k) {
        outputs.push_back(inner_update(p[adapted_[k]], second ? g[k] : g[k].detach(), k, s, meta_));
        seeds.push_back(v[k]);
      }
      const double w = s >= 1 ? weights[static_cast<std::size_t>(s - 1)] : 0.0;
      if (w != 0.0) {  // multi-step loss: the query term at phi_s
        outputs.push_back(task_loss(task, head(p, fq_in), task.query_y));
        seeds.push_back(seed(outputs.back(), w));
      }
      GradOptions back;
      back.allow_unused = true;
      const std::vector<Tensor> d = grad(outputs, inputs, back, seeds);
      for (std::size_t k = 0; k < n; ++k) v[k] = d[k];
      for (std::size_t i = model_count_; i < meta_.size(); ++i) accumulate(r.grads[i], d[n + i - model_count_]);
      if (has_body) {
        accumulate(fs_grad, d[d.size() - 2]);
        accumulate(fq_grad, d[d.size() - 1]);
      }
    }
    for (std::size_t k = 0; k < n; ++k) r.grads[adapted_[k]] = v[k];

    if (has_body) {  // the features' gradients, through the body
      TapeScope scope;
      std::vector<Tensor> body(meta_.tensors().begin(),
                               meta_.tensors().begin() + static_cast<std::ptrdiff_t>(adapted_.front()));
      GradOptions options;
      options.allow_unused = true;
      const std::vector<Tensor> g = grad({features(task.support_x, meta_), features(task.query_x, meta_)}, body,
                                         options, {defined_or_zeros(fs_grad, fs), defined_or_zeros(fq_grad, fq)});
      for (std::size_t i = 0; i < body.size(); ++i) r.grads[i] = g[i];
    }
    if (const Tensor penalty = alpha_penalty(); penalty.defined()) {
      TapeScope scope;
      const std::vector<Tensor> rates(meta_.tensors().begin() + static_cast<std::ptrdiff_t>(model_count_),
                                      meta_.tensors().end());
      const std::vector<Tensor> g = grad({penalty}, rates);
      for (std::size_t i = 0; i < g.size(); ++i) accumulate(r.grads[model_count_ + i], g[i]);
    }
    for (std::size_t i = 0; i < r.grads.size(); ++i) r.grads[i] = defined_or_zeros(r.grads[i], meta_[i]);
    return r;
  }

  // Meta-SGD's alpha_l2 * sum(alpha^2), added to every task's outer loss (the batch mean leaves it
  // counted once per meta-step); undefined when there is none. Recorded: call inside a scope.
  Tensor alpha_penalty() const {
    if (config_.rates != InnerRates::per_parameter) return Tensor();
    const std::vector<Tensor> alphas(meta_.tensors().begin() + static_cast<std::ptrdiff_t>(model_count_),
                                     meta_.tensors().end());
    return alpha_l2_penalty(alphas, config_.alpha_l2);
  }

  // The seed w for differentiating the scalar `loss` (w * loss).
  static Tensor seed(const Tensor& loss, double w) { return Tensor::scalar(w, loss.dtype(), loss.device()); }

  static Tensor defined_or_zeros(const Tensor& t, const Tensor& like) {
    return t.defined() ? t : Tensor::zeros(like.shape(), like.dtype(), like.device());
  }

  // One graph-free inner step on the support set: phi (its adapted entries) becomes phi_{s+1}.
  // Returns the support loss at phi_s as a value. `rates` supplies learned rates as values.
  Tensor plain_step(const tasks::Task& task, const Tensor& fs, std::vector<Tensor>& phi, int s,
                    const nn::ParameterList& rates) const {
    std::vector<Tensor> wrt;
    Tensor loss;
    {
      TapeScope scope;
      for (std::size_t i : adapted_) wrt.push_back(phi[i] = leaf(phi[i]));
      loss = task_loss(task, head(phi, fs), task.support_y);
      wrt = grad({loss}, wrt);
    }
    NoGradGuard no_grad;
    for (std::size_t k = 0; k < adapted_.size(); ++k) {
      const std::size_t i = adapted_[k];
      phi[i] = inner_update(phi[i].detach(), wrt[k], k, s, rates);
    }
    return loss.detach();
  }

  // The fused executor (meta/fused.h) on the whole batch, stacked. The metrics' sums are over tasks
  // (step_metrics takes means).
  MetaGradient fused_gradient(const tasks::TaskBatch& batch, const StepOptions& options) {
    // This process's share of the tasks; the per-task rows are gathered inside (meta/fused.h).
    const dist::Communicator& comm = dist::world();
    const dist::Share share = comm.share(static_cast<std::int64_t>(batch.size()));
    if (share.size() == 0) {
      fail(config_.name + ": a meta-batch of " + std::to_string(batch.size()) + " tasks split over " +
           std::to_string(comm.size()) + " processes leaves rank " + std::to_string(comm.rank()) +
           " without a task; raise training.meta_batch or start fewer processes");
    }
    const tasks::TaskBatch mine(batch.begin() + share.begin, batch.begin() + share.end);
    const StackedTasks tasks = stack_tasks(mine, meta_[0].device());
    // fused_meta_gradient_supported accepted the model: it is an MLP.
    const auto& mlp = dynamic_cast<const nn::Mlp&>(*model_);
    TaskRowGather gather;
    if (comm.size() > 1) {
      const auto n = static_cast<std::int64_t>(batch.size());
      gather = [&comm, n](const Tensor& rows) { return comm.all_gather_rows(rows, n); };
    }
    FusedStep step = fused_meta_gradient(config_, meta_steps_, mlp, meta_, tasks, 1, gather);
    MetaGradient out;
    Tensor query_sum, support_sum;
    double accuracy_sum = 0.0;
    if (options.metrics) {
      NoGradGuard no_grad;
      const double t = static_cast<double>(batch.size());
      query_sum = affine(step.query_loss, t, 0.0);
      support_sum = affine(step.support_loss, t, 0.0);
      if (tasks.kind == tasks::TaskKind::classification) {
        std::vector<double> accuracies;
        for (std::size_t i = 0; i < mine.size(); ++i) {
          const auto k = static_cast<std::int64_t>(i);
          const Tensor logits = reshape(slice(step.query_out, 0, k, k + 1),
                                        Shape{step.query_out.dim(1), step.query_out.dim(2)});
          accuracies.push_back(accuracy(logits, mine[i].query_y));
        }
        if (comm.size() > 1) accuracies = comm.all_gather(accuracies);  // in task order
        for (double a : accuracies) accuracy_sum += a;
      }
    }
    out.metrics = step_metrics(options, batch, query_sum, support_sum, accuracy_sum, step.grads);
    out.grads = std::move(step.grads);
    return out;
  }

  // ANIL: the body's output (computed once per task); otherwise the input itself.
  Tensor features(const Tensor& x, const nn::ParameterList& params) const {
    if (!config_.head_only) return x;
    return model_->forward_body(params, x);
  }

  Tensor head(const std::vector<Tensor>& phi, const Tensor& f) const {
    const nn::ParameterList p = model_layout_.with_tensors(phi);
    if (!config_.head_only) return model_->forward(p, f);
    return model_->forward_head(p, f);
  }

  // phi - lr * g for adapted parameter number k at inner step s. `lrs` supplies learned rates.
  Tensor inner_update(const Tensor& phi, const Tensor& g, std::size_t k, int s, const nn::ParameterList& lrs) const {
    switch (config_.rates) {
      case InnerRates::fixed:
        return sub(phi, affine(g, config_.inner_lr, 0.0));
      case InnerRates::per_layer_step: {
        return sub(phi, mul(g, lrs[model_count_ + config_.rate_index(k, s)]));
      }
      case InnerRates::per_parameter:
        return sub(phi, mul(g, lrs[model_count_ + config_.rate_index(k, s)]));
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
    visit(0, model_layout_.with_tensors(phi));
    for (int s = 0; s < steps; ++s) {
      plain_step(task, fs, phi, s, rates);
      visit(s + 1, model_layout_.with_tensors(phi));
    }
  }

  std::shared_ptr<const nn::Model> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  GradientAlgorithm config_;
  nlohmann::json json_;
  nn::ParameterList meta_;
  nn::ParameterList model_layout_;  // names and shapes of the model's parameters
  std::size_t model_count_ = 0;
  std::vector<std::size_t> adapted_;  // indices (into the model's parameters) that adapt
};

}  // namespace

std::unique_ptr<Learner> make_maml(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, MamlOptions options) {
  const nlohmann::json json = {{"inner_steps", options.inner_steps},
                               {"inner_lr", options.inner_lr},
                               {"first_order", options.first_order},
                               {"multi_step_loss", options.multi_step_loss},
                               {"msl_anneal_steps", options.msl_anneal_steps},
                               {"learn_inner_lrs", options.learn_inner_lrs},
                               {"first_order_until", options.first_order_until},
                               {"recompute_inner", options.recompute_inner},
                               {"model", model ? model->describe() : ""}};
  return std::make_unique<GradientLearner>(model, std::move(init), std::move(outer), maml_algorithm(options),
                                           json);
}

std::unique_ptr<Learner> make_meta_sgd(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, MetaSgdOptions options) {
  const nlohmann::json json = {{"inner_steps", options.inner_steps},
                               {"alpha_init", options.alpha_init},
                               {"alpha_l2", options.alpha_l2},
                               {"first_order", options.first_order},
                               {"recompute_inner", options.recompute_inner},
                               {"model", model ? model->describe() : ""}};
  return std::make_unique<GradientLearner>(model, std::move(init), std::move(outer),
                                           meta_sgd_algorithm(options), json);
}

std::unique_ptr<Learner> make_anil(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, AnilOptions options) {
  if (!model) fail("anil: no model given");
  const std::size_t head = model->head_parameter_start();
  if (head == 0) {
    fail("anil: the model " + model->describe() +
         " has no body/head split (use an MLP of at least two layers, or a backbone with a head)");
  }
  if (init.size() <= head) {
    fail("anil: the model " + model->describe() + " has its head from parameter " + std::to_string(head) +
         " on, but the parameter list holds only " + std::to_string(init.size()) + " (pass model->init(...))");
  }
  const nlohmann::json json = {{"inner_steps", options.inner_steps},
                               {"inner_lr", options.inner_lr},
                               {"first_order", options.first_order},
                               {"recompute_inner", options.recompute_inner},
                               {"model", model->describe()}};
  return std::make_unique<GradientLearner>(model, std::move(init), std::move(outer), anil_algorithm(options), json);
}

}  // namespace metatape::meta
