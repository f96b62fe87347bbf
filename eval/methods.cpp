#include "eval/methods.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/registry.h"

namespace metatape::eval {
namespace {

std::vector<double> host_outputs(const Tensor& t) { return t.to_vector<double>(); }

constexpr double kBaselineClipNorm = 1.0;

GradOptions allow_unused_grads() {
  GradOptions o;
  o.allow_unused = true;
  return o;
}

class LearnerMethod : public Method {
 public:
  explicit LearnerMethod(meta::Learner& learner) : learner_(learner) {}
  std::string name() const override { return learner_.name(); }
  bool is_baseline() const override { return false; }
  bool uses_steps() const override { return !meta::is_metric_learner(learner_.name()); }
  std::vector<std::vector<double>> predict(const Episode& episode, const std::vector<int>& steps, Generator&) override {
    std::vector<std::vector<double>> out;
    if (!uses_steps()) {
      const std::vector<double> once = run(episode, -1);
      return std::vector<std::vector<double>>(steps.size(), once);
    }
    for (int s : steps) out.push_back(run(episode, s));
    return out;
  }

 private:
  std::vector<double> run(const Episode& episode, int steps) {
    TapeScope scope;
    if (!uses_steps() && episode.task.kind == tasks::TaskKind::classification) {
      std::vector<std::int64_t> present;
      const tasks::Task restricted = restrict_to_support_classes(episode.task, false, &present);
      const nn::ParameterList adapted = learner_.adapt(restricted, steps);
      NoGradGuard no_grad;
      const std::vector<double> small = host_outputs(learner_.predict(adapted, restricted.query_x));
      const auto m = present.size(), classes = static_cast<std::size_t>(episode.task.num_classes);
      const std::size_t rows = small.size() / m;
      std::vector<double> full(rows * classes, -1e9);
      for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t j = 0; j < m; ++j) full[r * classes + static_cast<std::size_t>(present[j])] = small[r * m + j];
      }
      return full;
    }
    const nn::ParameterList adapted = learner_.adapt(episode.task, steps);
    NoGradGuard no_grad;
    return host_outputs(learner_.predict(adapted, episode.task.query_x));
  }
  meta::Learner& learner_;
};

class SgdMethod : public Method {
 public:
  SgdMethod(std::string name, std::shared_ptr<const nn::Model> model, nn::ParameterList start, double lr)
      : name_(std::move(name)), model_(std::move(model)), start_(std::move(start)), lr_(lr) {}
  std::string name() const override { return name_; }
  bool is_baseline() const override { return true; }
  bool uses_steps() const override { return true; }
  std::vector<std::vector<double>> predict(const Episode& episode, const std::vector<int>& steps,
                                           Generator& gen) override {
    const nn::ParameterList start = start_.empty() ? model_->init(gen) : start_;
    return sgd_query_outputs(*model_, start, episode.task, lr_, steps);
  }

 private:
  std::string name_;
  std::shared_ptr<const nn::Model> model_;
  nn::ParameterList start_;  // empty: a fresh initialisation per episode
  double lr_;
};

Tensor pooled_loss(const nn::Model& model, const nn::ParameterList& params, const tasks::Task& task) {
  const Tensor loss_s = meta::task_loss(task, model.forward(params, task.support_x), task.support_y);
  const Tensor loss_q = meta::task_loss(task, model.forward(params, task.query_x), task.query_y);
  return (loss_s + loss_q) * 0.5;
}

}  // namespace

tasks::Task restrict_to_support_classes(const tasks::Task& task, bool drop_query, std::vector<std::int64_t>* present) {
  if (task.kind != tasks::TaskKind::classification) return task;
  const auto support = task.support_y.to_vector<std::int64_t>();
  std::vector<std::int64_t> map(static_cast<std::size_t>(std::max<std::int64_t>(task.num_classes, 1)), -1);
  for (std::int64_t y : support) {
    if (y < 0 || y >= task.num_classes) {
      fail("benchmark: support label " + std::to_string(y) + " outside [0, " + std::to_string(task.num_classes) + ")");
    }
    map[static_cast<std::size_t>(y)] = 0;
  }
  std::vector<std::int64_t> ids;
  for (std::size_t c = 0; c < map.size(); ++c) {
    if (map[c] == 0) {
      map[c] = static_cast<std::int64_t>(ids.size());
      ids.push_back(static_cast<std::int64_t>(c));
    }
  }
  tasks::Task out = task;
  out.num_classes = static_cast<std::int64_t>(ids.size());
  std::vector<std::int64_t> s(support.size());
  for (std::size_t i = 0; i < support.size(); ++i) s[i] = map[static_cast<std::size_t>(support[i])];
  out.support_y = Tensor::indices(s);
  const auto query = task.query_y.to_vector<std::int64_t>();
  std::vector<std::int64_t> keep, q;
  for (std::size_t i = 0; i < query.size(); ++i) {
    const std::int64_t m = query[i] >= 0 && query[i] < task.num_classes ? map[static_cast<std::size_t>(query[i])] : -1;
    if (m >= 0 || !drop_query) {
      keep.push_back(static_cast<std::int64_t>(i));
      q.push_back(std::max<std::int64_t>(m, 0));
    }
  }
  if (drop_query && keep.size() != query.size()) {
    NoGradGuard no_grad;
    out.query_x = keep.empty() ? Tensor() : index_select(task.query_x, Tensor::indices(keep)).detach();
  }
  out.query_y = keep.empty() ? Tensor() : Tensor::indices(q);
  if (present != nullptr) *present = ids;
  return out;
}

FamilySource with_support_classes_only(const FamilySource& family) {
  if (family.kind != tasks::TaskKind::classification) return family;
  FamilySource out = family;
  const auto inner = family.train_batch;
  out.train_batch = [inner](std::int64_t n, Generator& gen) {
    tasks::TaskBatch batch;
    for (int attempts = 0; static_cast<std::int64_t>(batch.size()) < n; ++attempts) {
      if (attempts > 100 * n) fail("benchmark: no meta-train task kept a query row of a support class");
      for (tasks::Task& t : inner(1, gen)) {
        tasks::Task r = restrict_to_support_classes(t, true);
        if (r.query_x.defined()) batch.push_back(std::move(r));
      }
    }
    return batch;
  };
  // Which tasks are kept depends on their content: every process builds whole batches.
  out.train_share_batch = nullptr;
  return out;
}

std::unique_ptr<Method> make_learner_method(meta::Learner& learner) { return std::make_unique<LearnerMethod>(learner); }
std::unique_ptr<Method> make_scratch_method(std::shared_ptr<const nn::Model> model, double lr) {
  return std::make_unique<SgdMethod>("scratch", std::move(model), nn::ParameterList{}, lr);
}
std::unique_ptr<Method> make_finetune_method(std::shared_ptr<const nn::Model> model, nn::ParameterList pretrained,
                                             double lr) {
  return std::make_unique<SgdMethod>("finetune", std::move(model), std::move(pretrained), lr);
}

std::vector<std::vector<double>> sgd_query_outputs(const nn::Model& model, const nn::ParameterList& start,
                                                   const tasks::Task& task, double lr, const std::vector<int>& steps) {
  int max_steps = 0;
  for (int s : steps) {
    if (s < 0) fail("benchmark: adaptation steps must be >= 0, got " + std::to_string(s));
    max_steps = std::max(max_steps, s);
  }
  std::map<int, std::vector<double>> at;
  nn::ParameterList params = start.clone(true);
  auto snapshot = [&](int k) {
    if (std::find(steps.begin(), steps.end(), k) == steps.end()) return;
    NoGradGuard no_grad;
    at[k] = host_outputs(model.forward(params, task.query_x));
  };
  snapshot(0);
  for (int k = 1; k <= max_steps; ++k) {
    TapeScope scope;
    const Tensor loss = meta::task_loss(task, model.forward(params, task.support_x), task.support_y);
    const std::vector<Tensor> g = grad({loss}, params.tensors(), allow_unused_grads());
    std::vector<Tensor> next;
    {
      NoGradGuard no_grad;
      double ss = 0.0;
      for (const Tensor& t : g)
        for (double v : t.to_vector<double>()) ss += v * v;
      const double norm = std::sqrt(ss);
      const double scale = norm > kBaselineClipNorm ? kBaselineClipNorm / norm : 1.0;
      for (std::size_t i = 0; i < g.size(); ++i) next.push_back(sub(params[i], g[i] * (lr * scale)).detach());
    }
    params = params.with_tensors(std::move(next));
    params.requires_grad_(true);
    scope.close();
    snapshot(k);
  }
  std::vector<std::vector<double>> out;
  for (int s : steps) out.push_back(at.at(s));
  return out;
}

nn::ParameterList pretrain_network(const nn::Model& model, nn::ParameterList init, nn::Optimizer& optimizer,
                                   const FamilySource& family, std::int64_t steps, std::int64_t batch, Generator& gen) {
  nn::ParameterList params = init.clone(true);
  for (std::int64_t step = 0; step < steps; ++step) {
    const tasks::TaskBatch tasks = family.train_batch(batch, gen);
    TapeScope scope;
    Tensor total;
    for (const tasks::Task& task : tasks) {
      const Tensor loss = pooled_loss(model, params, task);
      total = total.defined() ? total + loss : loss;
    }
    total = total * (1.0 / static_cast<double>(tasks.size()));
    std::vector<Tensor> g = grad({total}, params.tensors(), allow_unused_grads());
    optimizer.step(params, g);
  }
  return params.clone(false);
}

}  // namespace metatape::eval
