#include "meta/learner.h"

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/checkpoint.h"
#include "nn/optimizer.h"
#include "nn/losses.h"

namespace metatape::meta {

StepMetrics Learner::meta_train_step(const tasks::TaskBatch& batch, const StepOptions& options) {
  MetaGradient g = meta_gradient(batch, options);
  prepare_outer_step();
  optimizer().step(meta_parameters(), g.grads);
  ++meta_steps_;
  g.metrics.step = meta_steps_;
  return g.metrics;
}

StepMetrics Learner::step_metrics(const StepOptions& options, const tasks::TaskBatch& batch, const Tensor& query_sum,
                                  const Tensor& support_sum, double accuracy_sum,
                                  const std::vector<Tensor>& grads) const {
  StepMetrics m;
  m.step = meta_steps_;
  if (!options.metrics) return m;
  double grad_norm = 0.0;
  {
    NoGradGuard no_grad;
    grad_norm = nn::global_norm(grads).item();  // the optimizer's definition (last_grad_norm)
  }
  const double inv = 1.0 / static_cast<double>(batch.size());
  m.computed = true;
  m.query_loss = query_sum.item() * inv;
  m.support_loss = support_sum.item() * inv;
  if (batch.front().kind == tasks::TaskKind::classification) m.query_accuracy = accuracy_sum * inv;
  m.grad_norm = grad_norm;
  return m;
}

Tensor task_loss(const tasks::Task& task, const Tensor& output, const Tensor& y) {
  switch (task.kind) {
    case tasks::TaskKind::regression:
      if (y.dtype() == DType::i64) fail("task_loss: regression targets must be float, got " + describe(y));
      if (output.shape() != y.shape()) {
        fail("task_loss: regression output " + describe(output) + " does not match targets " + describe(y) +
             " (check the model's output size)");
      }
      return nn::mse_loss(output, y);
    case tasks::TaskKind::classification:
      if (y.dtype() != DType::i64) fail("task_loss: classification labels must be i64, got " + describe(y));
      if (output.rank() != 2 || output.dim(1) != task.num_classes) {
        fail("task_loss: logits " + describe(output) + " do not have the task's " + std::to_string(task.num_classes) +
             " classes (check the model's output size)");
      }
      return nn::cross_entropy_loss(output, y);
    case tasks::TaskKind::portfolio:
      return nn::negative_sharpe_loss(output, y);
  }
  fail("task_loss: unknown task kind");
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  const auto predicted = argmax(logits, 1).to_vector<std::int64_t>();
  const auto truth = labels.to_vector<std::int64_t>();
  if (predicted.size() != truth.size() || truth.empty()) {
    fail("accuracy: " + describe(logits) + " and labels " + describe(labels) + " do not match");
  }
  std::size_t hits = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) hits += predicted[i] == truth[i];
  return static_cast<double>(hits) / static_cast<double>(truth.size());
}

std::vector<Evaluation> Learner::evaluate(const tasks::Task& task, const std::vector<int>& steps) {
  std::vector<Evaluation> out;
  for (int s : steps) {
    if (s < 0) fail("evaluate: step counts must be >= 0, got " + std::to_string(s));
    const nn::ParameterList adapted = adapt(task, s);
    NoGradGuard no_grad;
    const Tensor output = predict(adapted, task.query_x);
    Evaluation e;
    e.steps = s;
    e.loss = loss(task, output, task.query_y).item();
    if (task.kind == tasks::TaskKind::classification) e.accuracy = accuracy(output, task.query_y);
    out.push_back(e);
  }
  return out;
}

void save_learner(const std::string& path, Learner& learner, const Generator* generator,
                  const std::string& extra_config_json) {
  nn::Checkpoint cp;
  nlohmann::json config;
  config["learner"] = learner.name();
  config["options"] = nlohmann::json::parse(learner.config_json());
  try {
    config["extra"] = nlohmann::json::parse(extra_config_json);
  } catch (const nlohmann::json::exception&) {
    fail("save_learner: extra config is not valid JSON: " + extra_config_json);
  }
  cp.config_json = config.dump();
  cp.step = learner.meta_steps();
  if (generator) cp.generator = generator->state();
  cp.sections["params"] = learner.meta_parameters();
  cp.sections["optimizer"] = learner.optimizer().state();
  nn::save_checkpoint(path, cp);
}

void load_learner(const std::string& path, Learner& learner, Generator* generator) {
  const nn::Checkpoint cp = nn::load_checkpoint(path);
  const auto config = nlohmann::json::parse(cp.config_json);
  const std::string kind = config.value("learner", std::string("?"));
  if (kind != learner.name()) {
    fail("checkpoint '" + path + "': written by learner '" + kind + "', cannot load into '" + learner.name() + "'");
  }
  nn::restore_section(cp, "params", learner.meta_parameters());
  const auto it = cp.sections.find("optimizer");
  if (it == cp.sections.end()) fail("checkpoint '" + path + "': no optimizer state");
  learner.optimizer().load_state(it->second);
  learner.set_meta_steps(cp.step);
  if (generator) {
    if (!cp.generator) fail("checkpoint '" + path + "': no generator state was saved");
    generator->set_state(*cp.generator);
  }
}

std::unique_ptr<Learner> make_learner(const std::string& kind, std::shared_ptr<const nn::Model> model,
                                      nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                                      const LearnerOptions& options) {
  return learner_info(kind).make(std::move(model), std::move(init), std::move(outer), options);
}

}  // namespace metatape::meta
