#include "eval/training.h"

#include <chrono>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "kernels/error.h"
#include "nn/checkpoint.h"

namespace metatape::eval {
namespace {

double l2(const Tensor& t) {
  double ss = 0.0;
  for (double v : t.to_vector<double>()) ss += v * v;
  return std::sqrt(ss);
}

GradOptions allow_unused_grads() {
  GradOptions o;
  o.allow_unused = true;
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The JSONL log: appends, one object per line, flushed per line so a killed run keeps its history.
class JsonLines {
 public:
  explicit JsonLines(const std::string& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::app);
    if (!out_) fail("train: cannot open the metrics log " + path + " for writing (check the directory)");
  }
  void write(const nlohmann::json& j) {
    if (out_.is_open()) out_ << j.dump() << '\n' << std::flush;
  }

 private:
  std::ofstream out_;
};

}  // namespace

GradientDiagnostics diagnose_gradients(meta::Learner& learner, const tasks::TaskBatch& batch,
                                       const nn::ParameterList* before_step, double vanish_threshold,
                                       double explode_threshold) {
  GradientDiagnostics d;
  if (batch.empty()) fail("diagnose_gradients: empty task batch");
  for (const tasks::Task& task : batch) {
    TapeScope scope;
    nn::ParameterList adapted;
    {
      TapeScope inner;
      adapted = learner.adapt(task).clone(true);
    }
    const Tensor loss = meta::task_loss(task, learner.predict(adapted, task.query_x), task.query_y);
    const std::vector<Tensor> g = grad({loss}, adapted.tensors(), allow_unused_grads());
    for (std::size_t i = 0; i < g.size(); ++i) {
      d.grad_norms[adapted.name(i)] += l2(g[i]) / static_cast<double>(batch.size());
    }
  }
  if (before_step != nullptr) {
    const nn::ParameterList& now = learner.meta_parameters();
    for (std::size_t i = 0; i < now.size() && i < before_step->size(); ++i) {
      const auto a = now[i].to_vector<double>(), b = (*before_step)[i].to_vector<double>();
      double ss = 0.0, pp = 0.0;
      for (std::size_t k = 0; k < a.size(); ++k) {
        ss += (a[k] - b[k]) * (a[k] - b[k]);
        pp += b[k] * b[k];
      }
      d.update_norms[now.name(i)] = std::sqrt(ss);
      d.update_ratio[now.name(i)] = pp > 0.0 ? std::sqrt(ss / pp) : 0.0;
    }
  }
  for (const auto& [name, norm] : d.grad_norms) {
    if (!std::isfinite(norm) || norm > explode_threshold) d.exploding.push_back(name);
    else if (norm < vanish_threshold) d.vanishing.push_back(name);
  }
  return d;
}

void save_learner_checkpoint(const std::string& path, meta::Learner& learner, const Generator& gen,
                             const std::string& config_json) {
  nn::Checkpoint ck;
  ck.config_json = config_json;
  ck.step = learner.meta_steps();
  ck.generator = gen.state();
  ck.sections["params"] = learner.meta_parameters();
  ck.sections["optimizer"] = learner.optimizer().state();
  nn::save_checkpoint(path, ck);
}

void resume_learner(const std::string& path, meta::Learner& learner, Generator& gen) {
  const nn::Checkpoint ck = nn::load_checkpoint(path);
  if (!ck.generator) fail("resume: " + path + " has no generator state; it was not written by train");
  nn::restore_section(ck, "params", learner.meta_parameters());
  if (ck.sections.count("optimizer") == 0) fail("resume: " + path + " has no optimizer section");
  learner.optimizer().load_state(ck.sections.at("optimizer"));
  gen.set_state(*ck.generator);
  learner.set_meta_steps(ck.step);
}

TrainOutcome train_learner(meta::Learner& learner, const FamilySource& family, Generator& gen,
                           const TrainOptions& options) {
  if (options.meta_batch < 1) fail("train: meta_batch must be >= 1, got " + std::to_string(options.meta_batch));
  TrainOutcome outcome;
  JsonLines log(options.jsonl_path);
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t tasks_seen = 0;
  double adapt_ms = 0.0;
  auto checkpoint = [&] {
    if (!options.checkpoint_path.empty()) {
      save_learner_checkpoint(options.checkpoint_path, learner, gen, options.config_json);
    }
  };
  while (learner.meta_steps() < options.meta_steps) {
    if (options.interrupt != nullptr && options.interrupt->load()) {
      checkpoint();
      outcome.interrupted = true;
      break;
    }
    const auto step_t0 = std::chrono::steady_clock::now();
    const tasks::TaskBatch batch = family.train_batch(options.meta_batch, gen);
    const bool diagnose = options.diagnose_every > 0 &&
                          (learner.meta_steps() % options.diagnose_every == 0 ||
                           learner.meta_steps() + 1 == options.meta_steps);
    nn::ParameterList before;
    if (diagnose) before = learner.meta_parameters().clone(false);
    meta::StepMetrics m;
    {
      TapeScope scope;
      m = learner.meta_train_step(batch, meta::StepOptions{.metrics = true});
    }
    const double step_seconds = seconds_since(step_t0);
    tasks_seen += static_cast<std::int64_t>(batch.size());
    if (!std::isfinite(m.query_loss)) {
      checkpoint();
      fail("train: " + learner.name() + " on " + family.name + ": the query loss became " +
           std::to_string(m.query_loss) + " at meta-step " + std::to_string(learner.meta_steps()) +
           " (lower outer_lr or inner_lr, or set clip_norm)");
    }
    nlohmann::json line = {{"step", learner.meta_steps()},
                           {"query_loss", m.query_loss},
                           {"support_loss", m.support_loss},
                           {"grad_norm", m.grad_norm},
                           {"tasks_per_second", static_cast<double>(batch.size()) / std::max(step_seconds, 1e-9)},
                           {"step_seconds", step_seconds},
                           {"lr", learner.optimizer().current_lr()}};
    if (m.query_accuracy) line["accuracy"] = *m.query_accuracy;
    if (diagnose) {
      const auto a0 = std::chrono::steady_clock::now();
      {
        TapeScope scope;
        (void)learner.adapt(batch.front());
      }
      adapt_ms = seconds_since(a0) * 1e3;
      const GradientDiagnostics d = diagnose_gradients(learner, batch, &before);
      outcome.vanishing_flags += static_cast<std::int64_t>(d.vanishing.size());
      outcome.exploding_flags += static_cast<std::int64_t>(d.exploding.size());
      log.write({{"diagnostics", true},
                 {"step", learner.meta_steps()},
                 {"grad_norms", d.grad_norms},
                 {"update_norms", d.update_norms},
                 {"update_ratio", d.update_ratio},
                 {"vanishing", d.vanishing},
                 {"exploding", d.exploding}});
    }
    line["adaptation_ms"] = adapt_ms;
    log.write(line);
    outcome.last = m;
    if (options.progress != nullptr) {
      char status[160];
      std::snprintf(status, sizeof status, "%s/%s step %lld loss %.4f%s", family.name.c_str(),
                    learner.name().c_str(), static_cast<long long>(learner.meta_steps()), m.query_loss,
                    m.query_accuracy ? (" acc " + std::to_string(*m.query_accuracy).substr(0, 5)).c_str() : "");
      options.progress->update(options.progress_offset + learner.meta_steps(), status);
    }
    if (options.checkpoint_every > 0 && learner.meta_steps() % options.checkpoint_every == 0) checkpoint();
  }
  if (!outcome.interrupted) checkpoint();
  outcome.steps_done = learner.meta_steps();
  outcome.seconds = seconds_since(t0);
  outcome.tasks_per_second = outcome.seconds > 0 ? static_cast<double>(tasks_seen) / outcome.seconds : 0.0;
  outcome.adaptation_ms = adapt_ms;
  return outcome;
}

}  // namespace metatape::eval
