#include "eval/training.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "dist/communicator.h"
#include "eval/benchmark.h"
#include "eval/methods.h"
#include "eval/scoring.h"
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

// Fields of a JSONL line read back, tolerating lines not written by train_learner.
bool is_diagnostics(const nlohmann::json& j) {
  const auto it = j.find("diagnostics");
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
double number_or(const nlohmann::json& j, const char* key, double fallback) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
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

// JSON has no NaN or infinity: such values are written as null.
nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

// Kind of a JSONL line, in the order a step writes them: diagnostics, metrics, validation.
int line_kind(const nlohmann::json& j) {
  if (is_diagnostics(j)) return 0;
  const auto it = j.find("split");
  return it != j.end() && it->is_string() && it->get<std::string>() == "validation" ? 2 : 1;
}

constexpr const char* kBestSection = "validation.best";
constexpr const char* kTrainingSection = "training.params";

SelectionState selection_from(const nn::Checkpoint& ck) {
  SelectionState s;
  const nlohmann::json config = nlohmann::json::parse(ck.config_json, nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("selection")) return s;
  const nlohmann::json& j = config["selection"];
  if (!j.is_object()) return s;
  auto integer = [&](const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : std::int64_t{0};
  };
  s.metric = j.value("metric", std::string());
  s.best_step = integer("best_step");
  s.best_value = number_or(j, "best_value", std::nan(""));
  s.last_step = integer("last_step");
  s.last_value = number_or(j, "last_value", std::nan(""));
  s.selected_step = integer("selected_step");
  s.selected_value = number_or(j, "selected_validation_value", std::nan(""));
  s.every = integer("every");
  s.episodes = static_cast<int>(integer("episodes"));
  s.shots = static_cast<int>(integer("shots"));
  if (const auto it = j.find("seed"); it != j.end() && it->is_number_unsigned()) s.seed = it->get<std::uint64_t>();
  if (const auto it = j.find("select_best"); it != j.end() && it->is_boolean()) s.select_best = it->get<bool>();
  if (s.best_step > 0) {
    const auto it = ck.sections.find(kBestSection);
    if (it == ck.sections.end()) {
      fail("checkpoint: its selection records a best step (" + std::to_string(s.best_step) + ") but it has no '" +
           kBestSection + "' section (the file is damaged; retrain without --resume)");
    }
    s.best = it->second.clone(false);
  }
  return s;
}

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
    if (!std::isfinite(norm) || norm > explode_threshold)
      d.exploding.push_back(name);
    else if (norm < vanish_threshold)
      d.vanishing.push_back(name);
  }
  return d;
}

void save_learner_checkpoint(const std::string& path, meta::Learner& learner, const Generator& gen,
                             const std::string& config_json, const SelectionState* selection,
                             const nn::ParameterList* training_params) {
  nn::Checkpoint ck;
  ck.config_json = config_json;
  if (selection != nullptr && !selection->metric.empty()) {
    nlohmann::json config = nlohmann::json::parse(config_json, nullptr, false);
    if (config.is_discarded() || !config.is_object()) config = nlohmann::json::object();
    nlohmann::json j = {{"split", "validation"},
                        {"metric", selection->metric},
                        {"best_step", selection->best_step},
                        {"best_value", finite_or_null(selection->best_value)},
                        {"last_step", selection->last_step},
                        {"last_value", finite_or_null(selection->last_value)}};
    if (selection->selected_step > 0) {
      j["selected_step"] = selection->selected_step;
      j["selected_validation_value"] = finite_or_null(selection->selected_value);
    }
    j["every"] = selection->every;
    j["episodes"] = selection->episodes;
    j["shots"] = selection->shots;
    j["seed"] = selection->seed;
    j["select_best"] = selection->select_best;
    config["selection"] = j;
    ck.config_json = config.dump();
    if (selection->best_step > 0) ck.sections[kBestSection] = selection->best;
  }
  ck.step = learner.meta_steps();
  ck.generator = gen.state();
  ck.sections["params"] = learner.meta_parameters();
  if (training_params != nullptr) ck.sections[kTrainingSection] = *training_params;
  ck.sections["optimizer"] = learner.optimizer().state();
  nn::save_checkpoint(path, ck);
}

void resume_learner(const std::string& path, meta::Learner& learner, Generator& gen, SelectionState* selection) {
  const nn::Checkpoint ck = nn::load_checkpoint(path);
  if (!ck.generator) fail("resume: " + path + " has no generator state; it was not written by train");
  const bool training_state = selection != nullptr && ck.sections.count(kTrainingSection) != 0;
  nn::restore_section(ck, training_state ? kTrainingSection : "params", learner.meta_parameters());
  if (ck.sections.count("optimizer") == 0) fail("resume: " + path + " has no optimizer section");
  learner.optimizer().load_state(ck.sections.at("optimizer"));
  gen.set_state(*ck.generator);
  learner.set_meta_steps(ck.step);
  if (selection != nullptr) {
    try {
      *selection = selection_from(ck);
    } catch (const Error& e) {
      fail("resume: " + path + ": " + e.what());
    }
    if (selection->best_step > 0) {
      // The same check as for "params": names, shapes and dtypes.
      nn::ParameterList probe = learner.meta_parameters().clone(false);
      nn::restore_section(ck, kBestSection, probe);
    }
  }
}

SelectionState checkpoint_selection(const std::string& path) { return selection_from(nn::load_checkpoint(path)); }

double validation_value(meta::Learner& learner, const FamilySource& family, const std::vector<Episode>& episodes,
                        std::uint64_t seed, const TradingConfig& trading, std::int64_t* diverged) {
  const std::string metric = primary_metric(family);
  const auto method = make_learner_method(learner);
  const int steps = learner.default_adapt_steps();
  // Each process scores its share of the episodes (dist/communicator.h); the values are summed in
  // episode order, so every process and every process count gets the same number.
  const dist::Communicator& comm = dist::world();
  const auto n = static_cast<std::int64_t>(episodes.size());
  const dist::Share share = comm.share(n);
  std::vector<double> values;  // the metric, NaN for a diverged adaptation
  for (std::int64_t e = share.begin; e < share.end; ++e) {
    const auto ue = static_cast<std::size_t>(e);
    Generator g(derive_seed(seed, {static_cast<std::uint64_t>(e)}));
    const std::vector<double> out = method->predict(episodes[ue], {steps}, g).front();
    if (!std::all_of(out.begin(), out.end(), [](double v) { return std::isfinite(v); })) {
      values.push_back(std::nan(""));
      continue;
    }
    const MetricMap m = score_episode(family, episodes[ue], out, trading);
    const auto it = m.find(metric);
    if (it == m.end()) fail("validation: " + family.name + " episodes do not score " + metric);
    values.push_back(it->second);
  }
  if (comm.size() > 1) values = comm.all_gather(values);
  double sum = 0.0;
  std::int64_t bad = 0;
  for (double v : values) {
    if (std::isnan(v)) {
      ++bad;
    } else {
      sum += v;
    }
  }
  if (diverged != nullptr) *diverged = bad;
  if (bad > 0 || episodes.empty()) return std::nan("");
  return sum / static_cast<double>(episodes.size());
}

std::size_t cut_log_to_step(const std::string& jsonl_path, std::int64_t step) {
  std::ifstream in(jsonl_path);
  if (!in) return 0;
  struct Line {
    std::string text;
    std::int64_t step;
    int kind;  // line_kind
  };
  std::vector<Line> kept;
  std::size_t read = 0;
  for (std::string text; std::getline(in, text);) {
    ++read;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    const std::int64_t s = j["step"].get<std::int64_t>();
    const int kind = line_kind(j);
    // A step at or below the last one kept starts a resumed segment: it replaces what the earlier
    // segment wrote from that step on (a step writes its diagnostics line, its metrics line, then its
    // validation line, so a line of the same step and an earlier or the same kind starts a new segment).
    while (!kept.empty() && (kept.back().step > s || (kept.back().step == s && kept.back().kind >= kind))) {
      kept.pop_back();
    }
    if (s >= 1 && s <= step) kept.push_back({std::move(text), s, kind});
  }
  in.close();
  if (kept.size() == read) return 0;
  const std::string tmp = jsonl_path + ".cut";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const Line& l : kept) out << l.text << '\n';
    out.flush();
    if (!out) fail("resume: cannot rewrite the metrics log " + jsonl_path + " (via " + tmp + "); check the disk");
  }
  std::filesystem::rename(tmp, jsonl_path);
  return read - kept.size();
}

std::size_t remove_stale_checkpoint_temporaries(const std::string& checkpoint_path) {
  namespace fs = std::filesystem;
  const fs::path ck(checkpoint_path);
  const fs::path dir = ck.parent_path().empty() ? fs::path(".") : ck.parent_path();
  const std::string prefix = ck.filename().string() + ".tmp.";
  std::error_code ec;
  std::size_t removed = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const long pid = std::stol(digits);
    const bool alive =
        pid != static_cast<long>(::getpid()) && pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    if (alive) continue;
    std::error_code rm;
    if (fs::remove(entry.path(), rm)) ++removed;
  }
  return removed;
}

std::unique_ptr<meta::Learner> load_benchmark_learner(const BenchmarkConfig& config, const FamilySource& family,
                                                      std::size_t family_index, std::size_t learner_index, int run,
                                                      TrainingRecord& record) {
  const std::string& kind = config.learners.at(learner_index);
  const auto r = static_cast<std::uint64_t>(run);
  Generator init_gen(derive_seed(config.seed, {r, family_index, learner_index, 1}));
  Generator task_gen(derive_seed(config.seed, {r, family_index, learner_index, 2}));
  auto learner = make_benchmark_learner(kind, config, family, init_gen);
  const std::string path = learner_checkpoint_path(config, run, family.name, kind);
  if (path.empty() || !std::filesystem::exists(path)) {
    fail("eval: no checkpoint for " + kind + " on " + family.name + (path.empty() ? "" : " at " + path) +
         "; train it first (metatape train)");
  }
  resume_learner(path, *learner, task_gen);
  record = TrainingRecord{};
  record.family = family.name;
  record.learner = kind;
  record.run = run;
  record.steps = learner->meta_steps();
  record.final_query_loss = std::nan("");
  record.log_path = learner_log_path(config, run, family.name, kind);
  const SelectionState selection = checkpoint_selection(path);
  record.validation_metric = selection.metric;
  record.selected_step = selection.selected_step;
  record.selected_validation_value = selection.selected_value;
  // The last metrics line of the log at or before the checkpoint's step, read only.
  std::ifstream log(record.log_path);
  for (std::string text; std::getline(log, text);) {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || is_diagnostics(j) || !j.contains("query_loss")) continue;
    if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<std::int64_t>() > record.steps) continue;
    record.final_query_loss = number_or(j, "query_loss", std::nan(""));
    record.final_accuracy = number_or(j, "accuracy", -1.0);
    record.adaptation_ms = number_or(j, "adaptation_ms", 0.0);
  }
  return learner;
}

TrainOutcome train_learner(meta::Learner& learner, const FamilySource& family, Generator& gen,
                           const TrainOptions& options, SelectionState* selection) {
  if (options.meta_batch < 1) fail("train: meta_batch must be >= 1, got " + std::to_string(options.meta_batch));
  // Data parallelism (dist/communicator.h): every process runs this loop on the same batches, computes
  // its share of each meta-batch and applies the same update; only rank 0 writes files.
  const dist::Communicator& comm = dist::world();
  if (options.meta_batch < comm.size()) {
    fail("train: a meta_batch of " + std::to_string(options.meta_batch) + " tasks cannot be split over " +
         std::to_string(comm.size()) + " processes (each needs at least one task); raise training.meta_batch "
         "or start fewer processes");
  }
  const ValidationOptions& vopt = options.validation;
  if (vopt.every < 0)
    fail("train: validate_every must be >= 0 (0 turns validation off), got " + std::to_string(vopt.every));
  if (vopt.every > 0 && vopt.episodes < 1) {
    fail("train: validation_episodes must be >= 1 when validation is on, got " + std::to_string(vopt.episodes));
  }
  TrainOutcome outcome;
  SelectionState local;
  SelectionState& sel = selection != nullptr ? *selection : local;
  const bool validating = vopt.every > 0 && static_cast<bool>(family.validation_episode);
  std::vector<Episode> validation_episodes;
  if (validating) {
    Generator vgen(vopt.seed);
    validation_episodes.reserve(static_cast<std::size_t>(vopt.episodes));
    for (int e = 0; e < vopt.episodes; ++e) validation_episodes.push_back(family.validation_episode(vopt.shots, vgen));
    const std::string metric = primary_metric(family);
    if (!sel.metric.empty() && sel.metric != metric) {
      fail("train: the checkpoint selected on " + sel.metric + " but " + family.name + " validates on " + metric +
           " (retrain without --resume)");
    }
    if (sel.last_step > 0 && (sel.episodes != vopt.episodes || sel.shots != vopt.shots || sel.seed != vopt.seed)) {
      fail("train: the checkpoint's validation history was scored on " + std::to_string(sel.episodes) +
           " validation episodes of " + std::to_string(sel.shots) + " shots (seed " + std::to_string(sel.seed) +
           "), this run scores " + std::to_string(vopt.episodes) + " of " + std::to_string(vopt.shots) + " (seed " +
           std::to_string(vopt.seed) +
           "); resume with the same training.validation_episodes, "
           "evaluation.headline_shots and seed, or retrain without --resume");
    }
    sel.metric = metric;
    sel.every = vopt.every;
    sel.episodes = vopt.episodes;
    sel.shots = vopt.shots;
    sel.seed = vopt.seed;
    sel.select_best = vopt.select_best;
    outcome.validation_metric = metric;
  }
  const bool lower = validating && lower_is_better(sel.metric);
  JsonLines log(comm.writes_files() ? options.jsonl_path : std::string());
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t tasks_seen = 0;
  double adapt_ms = 0.0;
  auto checkpoint = [&](const nn::ParameterList* training_params = nullptr) {
    if (!options.checkpoint_path.empty() && comm.writes_files()) {
      save_learner_checkpoint(options.checkpoint_path, learner, gen, options.config_json, validating ? &sel : nullptr,
                              training_params);
    }
  };
  auto better = [&](double v, double than) { return lower ? v < than : v > than; };
  // `grid`: an evaluation at a multiple of vopt.every (a candidate for good); otherwise the evaluation
  // of the last step of a run that does not end on the grid, a candidate only while it is the last.
  auto validate = [&](bool grid) {
    std::int64_t diverged = 0;
    const auto v0 = std::chrono::steady_clock::now();
    const double v = validation_value(learner, family, validation_episodes, vopt.seed, vopt.trading, &diverged);
    const double seconds = seconds_since(v0);
    outcome.validation_seconds += seconds;
    const std::int64_t step = learner.meta_steps();
    const bool best = std::isfinite(v) && (sel.best_step == 0 || better(v, sel.best_value));
    if (best && grid) {
      sel.best_step = step;
      sel.best_value = v;
      sel.best = learner.meta_parameters().clone(false);
    }
    sel.last_step = step;
    sel.last_value = v;
    ++outcome.validations;
    log.write({{"step", step},
               {"split", "validation"},
               {"validation_metric", sel.metric},
               {"validation_value", finite_or_null(v)},
               {"best", best},
               {"diverged", diverged},
               {"seconds", seconds}});
  };
  while (learner.meta_steps() < options.meta_steps) {
    // Every process stops at the same step: one stops when any was interrupted.
    if (comm.any(options.interrupt != nullptr && options.interrupt->load())) {
      checkpoint();
      outcome.interrupted = true;
      break;
    }
    const auto step_t0 = std::chrono::steady_clock::now();
    // In a job of several processes each builds only its share of the batch where the source can
    // (the other tasks are shells, meta/task_rows.h); the draws and the generator state are the same.
    const tasks::TaskBatch batch =
        comm.size() > 1 && family.train_share_batch
            ? family.train_share_batch(options.meta_batch, comm.share(options.meta_batch), gen)
            : family.train_batch(options.meta_batch, gen);
    // Diagnostics only go to the log, which rank 0 writes.
    const bool diagnose = comm.writes_files() && options.diagnose_every > 0 &&
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
      // Rank 0's share when the batch holds shells (the diagnostics are log lines, not results).
      tasks::TaskBatch built;
      for (const tasks::Task& t : batch) {
        if (t.support_x.defined()) built.push_back(t);
      }
      const GradientDiagnostics d = diagnose_gradients(learner, built, &before);
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
    if (validating && learner.meta_steps() % vopt.every == 0) {
      validate(true);
    } else if (validating && learner.meta_steps() == options.meta_steps) {
      validate(false);
    }
    if (options.progress != nullptr) {
      char status[160];
      std::snprintf(status, sizeof status, "%s/%s step %lld loss %.4f%s", family.name.c_str(), learner.name().c_str(),
                    static_cast<long long>(learner.meta_steps()), m.query_loss,
                    m.query_accuracy ? (" acc " + std::to_string(*m.query_accuracy).substr(0, 5)).c_str() : "");
      options.progress->update(options.progress_offset + learner.meta_steps(), status);
    }
    if (options.checkpoint_every > 0 && learner.meta_steps() % options.checkpoint_every == 0) checkpoint();
  }
  if (!outcome.interrupted) {
    const std::int64_t end = learner.meta_steps();
    const bool last_evaluated = sel.last_step == end && std::isfinite(sel.last_value);
    if (validating && vopt.select_best && sel.best_step > 0 && sel.best_step != end &&
        !(last_evaluated && better(sel.last_value, sel.best_value))) {
      // Restore the best evaluation's meta-parameters; the checkpoint keeps the training state too.
      const nn::ParameterList training_params = learner.meta_parameters().clone(false);
      learner.meta_parameters().assign(sel.best);
      sel.selected_step = sel.best_step;
      sel.selected_value = sel.best_value;
      checkpoint(&training_params);
    } else {
      if (validating) {
        sel.selected_step = end;
        sel.selected_value = sel.last_step == end ? sel.last_value : std::nan("");
      }
      checkpoint();
    }
    outcome.selected_step = sel.selected_step;
    outcome.selected_validation_value = sel.selected_value;
  }
  outcome.steps_done = learner.meta_steps();
  outcome.seconds = seconds_since(t0);
  outcome.tasks_per_second = outcome.seconds > 0 ? static_cast<double>(tasks_seen) / outcome.seconds : 0.0;
  outcome.adaptation_ms = adapt_ms;
  return outcome;
}

}  // namespace metatape::eval
