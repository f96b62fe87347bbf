#include "eval/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "autograd/hash.h"
#include "autograd/random.h"
#include "dist/communicator.h"
#include "eval/baselines.h"
#include "eval/methods.h"
#include "eval/scoring.h"
#include "eval/training.h"
#include "kernels/error.h"
#include "meta/registry.h"
#include "nn/optimizer.h"

namespace metatape::eval {
namespace {

// A name's seed component: FNV-1a of its bytes (autograd/hash.h).
std::uint64_t name_hash(const std::string& s) { return fnv1a64(s); }

// Summed validation scores per steps value: steps -> (sum of the primary metric, episodes).
using ValidationSums = std::map<int, std::pair<double, std::int64_t>>;

// The steps value with the best validation mean; `fallback` when nothing was validated.
int best_validation_steps(const ValidationSums& sums, bool lower_better, int fallback) {
  int best_steps = fallback;
  double best = 0.0;
  bool first = true;
  for (const auto& [steps, sn] : sums) {
    if (sn.second == 0) continue;
    const double mean = sn.first / static_cast<double>(sn.second);
    if (first || (lower_better ? mean < best : mean > best)) {
      best = mean;
      best_steps = steps;
      first = false;
    }
  }
  return best_steps;
}

void check_config(const BenchmarkConfig& c, const std::vector<FamilySource>& families) {
  auto bad = [](const std::string& what) { fail("benchmark: " + what); };
  if (families.empty()) bad("no task family to run (configure families: [...])");
  if (c.learners.empty()) bad("no learner configured (learners: [maml, meta-sgd, protonet, ...])");
  if (c.shots.empty()) bad("shots is empty (e.g. shots: [1, 5, 10])");
  if (c.steps.empty()) bad("steps is empty (e.g. steps: [1, 5, 10])");
  for (int s : c.shots)
    if (s < 1) bad("every shots value must be >= 1, got " + std::to_string(s));
  for (int s : c.steps)
    if (s < 1) bad("every steps value must be >= 1, got " + std::to_string(s));
  if (c.runs < 1) bad("runs must be >= 1, got " + std::to_string(c.runs));
  if (c.episodes < 2) bad("episodes must be >= 2 for paired tests, got " + std::to_string(c.episodes));
  if (c.meta_steps < 0) bad("meta_steps must be >= 0");
  if (c.meta_batch < 1) bad("meta_batch must be >= 1");
  if (c.hidden.empty()) bad("hidden must list at least one layer width (e.g. hidden: [64, 64])");
  if (c.headline_shots != 0 && std::find(c.shots.begin(), c.shots.end(), c.headline_shots) == c.shots.end()) {
    bad("evaluation.headline_shots is " + std::to_string(c.headline_shots) +
        " but shots does not list it (use one of shots, or 0 for the middle value)");
  }
  if (c.selection_episodes < 0) bad("evaluation.selection_episodes must be >= 0 (0 turns selection off)");
  if (c.validate_every < 0) bad("training.validate_every must be >= 0 (0 turns checkpoint selection off)");
  if (c.validate_every > 0 && c.validation_episodes < 1) {
    bad("training.validation_episodes must be >= 1 when training.validate_every is on");
  }
  bool any = false;
  for (const auto& kind : c.learners) {
    for (const auto& f : families) any = any || learner_fits(kind, f);
  }
  if (!any) bad("no configured learner fits the configured families (metric learners need classification)");
}

}  // namespace

std::uint64_t derive_seed(std::uint64_t base, std::initializer_list<std::uint64_t> path) {
  std::uint64_t s = splitmix64(base);
  for (std::uint64_t p : path) s = splitmix64(s ^ splitmix64(p + 0x1234567ULL));
  return s;
}

int headline_shots(const BenchmarkConfig& config) {
  if (config.headline_shots != 0) return config.headline_shots;
  return config.shots.empty() ? 0 : config.shots[config.shots.size() / 2];
}

bool is_metric_learner(const std::string& kind) { return meta::is_metric_learner(kind); }

bool learner_fits(const std::string& kind, const FamilySource& family) {
  return !is_metric_learner(kind) || family.kind == tasks::TaskKind::classification;
}

std::shared_ptr<const nn::Model> make_network(const BenchmarkConfig& config, const FamilySource& family,
                                              bool embedding) {
  if (config.model == "temporal") {
    if (family.window <= 0 || family.feature_dim % family.window != 0) {
      fail("benchmark: training.model is temporal but the " + family.name + " rows are " +
           std::to_string(family.feature_dim) +
           " indicator features, not raw windows (set tasks.features: raw_window, or training.model: mlp)");
    }
    nn::TemporalSpec spec = config.temporal;
    spec.in_channels = family.feature_dim / family.window;
    spec.window = family.window;
    spec.out_features = embedding ? 0 : family.outputs;
    spec.activation = nn::parse_activation(config.activation);
    return std::make_shared<const nn::TemporalEncoder>(spec);
  }
  if (config.model != "mlp") fail("benchmark: unknown model '" + config.model + "' (training.model: mlp or temporal)");
  nn::MlpSpec spec;
  spec.sizes.push_back(family.feature_dim);
  for (std::int64_t h : config.hidden) spec.sizes.push_back(h);
  if (!embedding) spec.sizes.push_back(family.outputs);
  spec.activation = nn::parse_activation(config.activation);
  return std::make_shared<const nn::Mlp>(spec);
}

std::unique_ptr<meta::Learner> make_benchmark_learner(const std::string& kind, const BenchmarkConfig& config,
                                                      const FamilySource& family, Generator& gen) {
  auto model = make_network(config, family, is_metric_learner(kind));
  nn::OptimizerOptions opt;
  opt.lr = config.outer_lr;
  opt.clip_norm = config.clip_norm;
  if (kind == "reptile") opt.lr = config.learner_options.reptile.epsilon;
  auto optimizer = nn::make_optimizer(kind == "reptile" ? "sgd" : config.outer_optimizer, opt);
  nn::ParameterList init = model->init(gen);
  return meta::make_learner(kind, model, std::move(init), std::move(optimizer), config.learner_options);
}

void correct_comparisons(std::vector<Comparison>& comparisons, double alpha) {
  std::vector<double> pt, pw;
  for (const auto& c : comparisons) {
    pt.push_back(c.t_test.p_value);
    pw.push_back(c.wilcoxon.p_value);
  }
  const auto ht = holm_adjust(pt), hw = holm_adjust(pw);
  for (std::size_t i = 0; i < comparisons.size(); ++i) {
    comparisons[i].p_t_holm = ht[i];
    comparisons[i].p_wilcoxon_holm = hw[i];
    comparisons[i].significant = ht[i] < alpha;
  }
}

std::string learner_checkpoint_path(const BenchmarkConfig& config, int run, const std::string& family,
                                    const std::string& kind) {
  if (config.out_dir.empty()) return "";
  return (std::filesystem::path(config.out_dir) / ("run" + std::to_string(run)) / family / (kind + ".ckpt")).string();
}

std::string learner_log_path(const BenchmarkConfig& config, int run, const std::string& family,
                             const std::string& kind) {
  if (config.out_dir.empty()) return "";
  return (std::filesystem::path(config.out_dir) / ("run" + std::to_string(run)) / family / (kind + ".jsonl")).string();
}

std::unique_ptr<meta::Learner> train_benchmark_learner(const BenchmarkConfig& config, const FamilySource& family,
                                                       std::size_t family_index, std::size_t learner_index, int run,
                                                       ProgressBar* progress, std::int64_t progress_offset,
                                                       const std::atomic<bool>* interrupt, TrainingRecord& record,
                                                       bool& interrupted, std::int64_t checkpoint_every) {
  if (config.evaluate_only) {
    interrupted = false;
    return load_benchmark_learner(config, family, family_index, learner_index, run, record);
  }
  const std::string& kind = config.learners.at(learner_index);
  const auto r = static_cast<std::uint64_t>(run);
  Generator init_gen(derive_seed(config.seed, {r, family_index, learner_index, 1}));
  Generator task_gen(derive_seed(config.seed, {r, family_index, learner_index, 2}));
  auto learner = make_benchmark_learner(kind, config, family, init_gen);
  TrainOptions topt;
  topt.meta_steps = config.meta_steps;
  topt.meta_batch = config.meta_batch;
  topt.diagnose_every = config.diagnose_every;
  topt.interrupt = interrupt;
  topt.progress = progress;
  topt.progress_offset = progress_offset;
  topt.checkpoint_every = checkpoint_every;
  topt.validation.every = config.validate_every;
  topt.validation.episodes = config.validation_episodes;
  topt.validation.shots = headline_shots(config);
  topt.validation.select_best = config.select_best;
  topt.validation.trading = config.trading;
  // The same validation episodes for every learner of a (run, family).
  topt.validation.seed = derive_seed(config.seed, {r, family_index, 4100});
  {
    // The checkpoint records what the model predicts, so serve and the C API need no --task.
    nlohmann::json config = nlohmann::json::parse(learner->config_json());
    config["task_kind"] = family.kind == tasks::TaskKind::classification ? "classification"
                          : family.kind == tasks::TaskKind::portfolio    ? "portfolio"
                                                                         : "regression";
    config["num_classes"] = family.kind == tasks::TaskKind::classification ? family.num_classes : 0;
    topt.config_json = config.dump();
  }
  topt.checkpoint_path = learner_checkpoint_path(config, run, family.name, kind);
  topt.jsonl_path = learner_log_path(config, run, family.name, kind);
  SelectionState selection;
  if (!topt.checkpoint_path.empty()) {
    // Every process resumes from the checkpoint; only rank 0 (which writes the files) tidies them.
    const bool writer = dist::world().writes_files();
    if (writer) {
      std::filesystem::create_directories(std::filesystem::path(topt.checkpoint_path).parent_path());
      remove_stale_checkpoint_temporaries(topt.checkpoint_path);
    }
    if (config.resume && std::filesystem::exists(topt.checkpoint_path)) {
      resume_learner(topt.checkpoint_path, *learner, task_gen, &selection);
      if (writer) cut_log_to_step(topt.jsonl_path, learner->meta_steps());
    } else if (writer && std::filesystem::exists(topt.jsonl_path)) {
      std::filesystem::remove(topt.jsonl_path);
    }
  }
  const TrainOutcome outcome = train_learner(
      *learner, is_metric_learner(kind) ? with_support_classes_only(family) : family, task_gen, topt, &selection);
  record = TrainingRecord{};
  record.family = family.name;
  record.learner = kind;
  record.run = run;
  record.steps = outcome.steps_done;
  record.seconds = outcome.seconds;
  record.tasks_per_second = outcome.tasks_per_second;
  record.final_query_loss = outcome.last.query_loss;
  record.final_accuracy = outcome.last.query_accuracy.value_or(-1.0);
  record.adaptation_ms = outcome.adaptation_ms;
  record.vanishing_flags = outcome.vanishing_flags;
  record.exploding_flags = outcome.exploding_flags;
  record.log_path = topt.jsonl_path;
  record.validation_metric = outcome.validation_metric;
  record.selected_step = outcome.selected_step;
  record.selected_validation_value = outcome.selected_validation_value;
  interrupted = outcome.interrupted;
  return learner;
}

BenchmarkResult run_benchmark(const BenchmarkConfig& config, const std::vector<FamilySource>& families,
                              ProgressBar* progress, const std::atomic<bool>* interrupt) {
  check_config(config, families);
  const auto t0 = std::chrono::steady_clock::now();
  BenchmarkResult result;
  result.config = config;
  for (const auto& f : families) {
    result.families.push_back(f.name);
    result.primary[f.name] = primary_metric(f);
    result.reference[f.name] = reference_strategy_name(f);
  }
  result.methods = config.learners;
  // The families' simple baselines are fitted once (on the train split) and shared by every run.
  std::map<std::size_t, std::vector<std::unique_ptr<Method>>> family_baselines;  // family index -> fitted
  std::int64_t total_units = 0;
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    BaselineOptions bopt;
    bopt.seed = derive_seed(config.seed, {fi, 6000});
    family_baselines[fi] = make_family_baselines(families[fi], bopt);
    const auto n_methods = static_cast<std::int64_t>(config.learners.size() + family_baselines[fi].size()) + 2;
    total_units += (static_cast<std::int64_t>(config.learners.size()) + 1) * config.meta_steps +
                   static_cast<std::int64_t>(config.shots.size()) * config.episodes * n_methods;
  }
  if (progress != nullptr) progress->set_total(total_units * config.runs);
  std::int64_t units_done = 0;
  // Data parallelism (dist/communicator.h): every process runs this function; the learners' training
  // splits each meta-batch, and the scoring below splits the episodes (spread): each process adapts on
  // its share and every process records all results in episode order. Stopping is agreed by all.
  const dist::Communicator& comm = dist::world();
  auto stopped = [&] { return comm.any(interrupt != nullptr && interrupt->load()); };
  // compute(i) for this process's share of n items, then every item's values in item order. In one
  // process an interruption ends the loop early: the items computed so far are returned.
  auto spread = [&](std::int64_t n, const std::function<std::vector<double>(std::size_t)>& compute) {
    const dist::Share share = comm.share(n);
    std::vector<std::vector<double>> mine;
    for (std::int64_t i = share.begin; i < share.end; ++i) {
      if (comm.size() == 1 && i > share.begin && interrupt != nullptr && interrupt->load()) break;
      mine.push_back(compute(static_cast<std::size_t>(i)));
    }
    return comm.size() == 1 ? mine : comm.all_gather_items(mine, n);
  };

  // (family, shots, steps, method) -> cell, with values pooled across runs.
  std::map<std::tuple<std::string, int, int, std::string>, CellResult> cells;
  std::map<std::tuple<std::string, int, int, std::string>, double> adapt_seconds;
  std::vector<std::string> method_order;
  std::map<std::tuple<std::string, int, int, std::string>, std::int64_t> diverged;
  std::map<std::tuple<std::string, int, int, std::string>, std::vector<CellResult::CalibrationBin>> calibration;
  // Arbitrage cells: every test row's truth and P(class 1), for the pooled PR-AUC.
  std::map<std::tuple<std::string, int, int, std::string>, std::pair<std::vector<std::int64_t>, std::vector<double>>>
      pooled_rows;
  // Validation means of the primary metric, summed over runs: (family, learner) -> steps -> (sum, n).
  std::map<std::pair<std::string, std::string>, ValidationSums> validation;

  for (int run = 0; run < config.runs && !stopped(); ++run) {
    for (std::size_t fi = 0; fi < families.size() && !stopped(); ++fi) {
      const FamilySource& family = families[fi];
      // ---- meta-training ------------------------------------------------------------------------
      std::vector<std::unique_ptr<meta::Learner>> learners;
      for (std::size_t li = 0; li < config.learners.size(); ++li) {
        if (!learner_fits(config.learners[li], family)) {
          units_done += config.meta_steps;
          continue;
        }
        TrainingRecord rec;
        bool was_interrupted = false;
        auto learner =
            train_benchmark_learner(config, family, fi, li, run, progress, units_done, interrupt, rec, was_interrupted);
        units_done += config.meta_steps;
        result.training.push_back(rec);
        if (was_interrupted) break;
        learners.push_back(std::move(learner));
      }
      if (stopped()) break;

      // ---- baselines ----------------------------------------------------------------------------
      auto net = make_network(config, family, false);
      Generator pre_gen(derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 1000, 1}));
      nn::OptimizerOptions popt;
      popt.lr = config.outer_lr;
      popt.clip_norm = config.clip_norm;
      auto pre_opt = nn::make_optimizer(config.outer_optimizer, popt);
      nn::ParameterList pretrained =
          pretrain_network(*net, net->init(pre_gen), *pre_opt, family, config.meta_steps, config.meta_batch, pre_gen);
      units_done += config.meta_steps;
      if (progress != nullptr) progress->update(units_done, family.name + "/pretrain done");

      auto& fitted = family_baselines[fi];
      std::vector<std::unique_ptr<Method>> owned;
      for (auto& l : learners) owned.push_back(make_learner_method(*l));
      owned.push_back(make_scratch_method(net, config.baseline_lr));
      owned.push_back(make_finetune_method(net, pretrained, config.baseline_lr));
      // Scoring order: learners, the simple baselines, scratch, finetune.
      std::vector<Method*> methods;
      for (std::size_t i = 0; i < learners.size(); ++i) methods.push_back(owned[i].get());
      for (auto& b : fitted) methods.push_back(b.get());
      for (std::size_t i = learners.size(); i < owned.size(); ++i) methods.push_back(owned[i].get());
      for (Method* m : methods) {
        if (m->is_baseline() && m->name() != "scratch" && m->name() != "finetune" &&
            std::find(result.simple_baselines.begin(), result.simple_baselines.end(), m->name()) ==
                result.simple_baselines.end()) {
          result.simple_baselines.push_back(m->name());
        }
        if (std::find(method_order.begin(), method_order.end(), m->name()) != method_order.end()) continue;
        method_order.push_back(m->name());
        if (m->is_baseline()) result.baselines.push_back(m->name());
      }
      // A diverged adaptation is scored as the family's first baseline (the class prior, the support
      // mean or equal weights).
      Method* fallback = fitted.front().get();
      const bool pooled_detection = is_detection_family(family) && family.num_classes == 2;
      std::string reference = reference_strategy_name(family);
      for (Method* m : methods) {
        if (m->name() == reference) reference.clear();  // portfolio: zero-skill already is equal weight
      }

      // ---- selection of the headline steps on the validation split (before any test episode) --------
      if (config.selection_episodes > 0 && family.validation_episode) {
        const int shots = headline_shots(config);
        const std::string metric = primary_metric(family);
        Generator val_gen(derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 4000}));
        std::vector<Episode> val;
        for (int e = 0; e < config.selection_episodes; ++e) val.push_back(family.validation_episode(shots, val_gen));
        for (auto& method : methods) {
          if (method->is_baseline() || !method->uses_steps() || stopped()) continue;
          auto& sums = validation[{family.name, method->name()}];
          // Per episode: the primary metric for each steps value.
          const auto values = spread(static_cast<std::int64_t>(val.size()), [&](std::size_t e) {
            std::vector<double> v;
            for (int steps : config.steps) {
              Generator g(derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 5000, e}));
              std::vector<double> out = method->predict(val[e], {steps}, g).front();
              if (!std::all_of(out.begin(), out.end(), [](double x) { return std::isfinite(x); })) {
                Generator unused(0);
                out = fallback->predict(val[e], {steps}, unused).front();
              }
              v.push_back(score_episode(family, val[e], out, config.trading).at(metric));
            }
            return v;
          });
          for (const auto& v : values) {
            for (std::size_t k = 0; k < config.steps.size(); ++k) {
              auto& [sum, n] = sums[config.steps[k]];
              sum += v[k];
              ++n;
            }
          }
        }
      }

      // ---- evaluation ---------------------------------------------------------------------------
      for (std::size_t si = 0; si < config.shots.size() && !stopped(); ++si) {
        const int shots = config.shots[si];
        Generator episode_gen(derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 2000, si}));
        std::vector<Episode> episodes;
        episodes.reserve(static_cast<std::size_t>(config.episodes));
        for (int e = 0; e < config.episodes; ++e) {
          episodes.push_back(family.test_episode(shots, episode_gen));
          const tasks::Task& t = episodes.back().task;
          result.episodes.push_back(EpisodeRecord{family.name, run, shots, e, t.symbols, t.support_begin_ms,
                                                  t.support_end_ms, t.query_begin_ms, t.query_end_ms});
        }
        for (auto& method : methods) {
          if (stopped()) break;
          // Per episode, for each steps value: the adaptation's seconds, its output count, its outputs.
          const auto computed = spread(static_cast<std::int64_t>(episodes.size()), [&](std::size_t e) {
            const std::uint64_t episode_seed =
                derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 3000, si, e});
            std::vector<double> packed;
            auto pack = [&](const std::vector<double>& outputs, double seconds) {
              packed.push_back(seconds);
              packed.push_back(static_cast<double>(outputs.size()));
              packed.insert(packed.end(), outputs.begin(), outputs.end());
            };
            if (method->uses_steps()) {
              for (int steps : config.steps) {
                Generator g(episode_seed);
                const auto a0 = std::chrono::steady_clock::now();
                const auto out = method->predict(episodes[e], {steps}, g);
                pack(out.front(), std::chrono::duration<double>(std::chrono::steady_clock::now() - a0).count());
              }
            } else {
              Generator g(episode_seed);
              const auto a0 = std::chrono::steady_clock::now();
              const auto out = method->predict(episodes[e], config.steps, g);
              const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - a0).count();
              for (std::size_t k = 0; k < config.steps.size(); ++k) pack(out[k], sec);
            }
            return packed;
          });
          for (std::size_t e = 0; e < computed.size(); ++e) {
            auto record = [&](int steps, std::vector<double> outputs, double seconds) {
              if (!std::all_of(outputs.begin(), outputs.end(), [](double v) { return std::isfinite(v); })) {
                // A diverged adaptation: counted, and scored as the zero-skill prediction.
                Generator unused(0);
                outputs = fallback->predict(episodes[e], {steps}, unused).front();
                ++diverged[{family.name, shots, steps, method->name()}];
              }
              MetricMap m;
              try {
                m = score_episode(family, episodes[e], outputs, config.trading);
              } catch (const Error& err) {
                fail(method->name() + " (" + std::to_string(shots) + "-shot, " + std::to_string(steps) +
                     " steps, episode " + std::to_string(e) + "): " + err.what());
              }
              auto& cell = cells[{family.name, shots, steps, method->name()}];
              for (const auto& [k, v] : m) cell.values[k].push_back(v);
              if (family.kind == tasks::TaskKind::classification) {
                auto& bins = calibration[{family.name, shots, steps, method->name()}];
                bins.resize(kCalibrationBins);
                const auto truth = episodes[e].task.query_y.to_vector<std::int64_t>();
                const auto p = softmax_rows(outputs, family.outputs);
                const auto k = static_cast<std::size_t>(family.outputs);
                for (std::size_t r = 0; r < truth.size(); ++r) {
                  for (std::size_t c = 0; c < k; ++c) {
                    const double q = p[r * k + c];
                    auto& bin = bins[std::min<std::size_t>(kCalibrationBins - 1,
                                                           static_cast<std::size_t>(q * kCalibrationBins))];
                    ++bin.count;
                    bin.predicted += q;
                    bin.outcomes += static_cast<std::size_t>(truth[r]) == c ? 1.0 : 0.0;
                  }
                }
              }
              if (pooled_detection) {
                auto& rows = pooled_rows[{family.name, shots, steps, method->name()}];
                const auto truth = episodes[e].task.query_y.to_vector<std::int64_t>();
                const auto p = softmax_rows(outputs, 2);
                for (std::size_t r = 0; r < truth.size(); ++r) {
                  rows.first.push_back(truth[r]);
                  rows.second.push_back(p[2 * r + 1]);
                }
              }
              adapt_seconds[{family.name, shots, steps, method->name()}] += seconds;
            };
            std::size_t at = 0;
            for (int steps : config.steps) {
              const double seconds = computed[e][at];
              const auto count = static_cast<std::size_t>(computed[e][at + 1]);
              const auto first = computed[e].begin() + static_cast<std::ptrdiff_t>(at + 2);
              record(steps, std::vector<double>(first, first + static_cast<std::ptrdiff_t>(count)), seconds);
              at += 2 + count;
            }
            ++units_done;
            if (progress != nullptr) {
              progress->update(units_done, family.name + " " + std::to_string(shots) + "-shot " + method->name());
            }
          }
        }
        if (!reference.empty()) {
          for (const Episode& ep : episodes) {
            const MetricMap m = reference_strategy(family, ep, config.trading);
            for (int steps : config.steps) {
              auto& cell = cells[{family.name, shots, steps, reference}];
              for (const auto& [k, v] : m) cell.values[k].push_back(v);
            }
          }
        }
      }

      // ---- walk-forward trading on the test split (eval/walk_forward.h) ------------------------------
      // Every method of this family (learners and baselines) at walk_forward.shots (0: the middle shots
      // value); a learner adapts with the steps its validation episodes chose so far (the headline
      // choice), else the first steps value; plus buy-and-hold (run 0 only: it does not depend on the run).
      // The deflated Sharpe counts N = methods x runs trials; it is recomputed over all curves so far,
      // so after the last run it covers every run.
      if (config.walk_forward.enabled && !stopped() && family.market &&
          (family.name == "price_direction" || family.name == "market_regime")) {
        WalkForwardConfig wf = config.walk_forward;
        if (wf.shots == 0) wf.shots = config.shots[config.shots.size() / 2];
        wf.steps = config.steps.front();
        wf.trading = config.trading;
        wf.seed = derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 4000});
        auto keep = [&](std::vector<EquityCurve> curves) {
          for (auto& c : curves) c.run = run;
          for (auto& c : curves) result.walk_forward.push_back(std::move(c));
        };
        try {
          for (std::size_t mi = 0; mi < methods.size() && !stopped(); ++mi) {
            Generator wf_gen(derive_seed(config.seed, {static_cast<std::uint64_t>(run), fi, 4001, mi}));
            WalkForwardConfig method_wf = wf;
            if (auto v = validation.find({family.name, methods[mi]->name()}); v != validation.end()) {
              method_wf.steps = best_validation_steps(v->second, lower_is_better(primary_metric(family)), wf.steps);
            }
            keep(walk_forward(family, *methods[mi], method_wf, wf_gen));
          }
          if (run == 0) keep(buy_and_hold_curve(family, wf));
        } catch (const Error& e) {
          fail(std::string(e.what()) + " (or turn walk-forward off: evaluation.walk_forward.enabled: false)");
        }
        assign_deflated_sharpe(result.walk_forward, static_cast<std::int64_t>(methods.size()) * config.runs);
      }
    }
  }
  result.interrupted = stopped();
  for (const auto& f : families) {
    const std::string r = reference_strategy_name(f);
    if (!r.empty() && std::find(method_order.begin(), method_order.end(), r) == method_order.end()) {
      method_order.push_back(r);
      result.baselines.push_back(r);
    }
  }

  // ---- aggregates, in a stable order --------------------------------------------------------------
  for (const auto& f : families) {
    for (int shots : config.shots) {
      for (int steps : config.steps) {
        for (const auto& name : method_order) {
          auto it = cells.find({f.name, shots, steps, name});
          if (it == cells.end() || it->second.values.empty()) continue;
          CellResult cell = std::move(it->second);
          cell.family = f.name;
          cell.method = name;
          cell.shots = shots;
          cell.steps = steps;
          cell.baseline = std::find(result.baselines.begin(), result.baselines.end(), name) != result.baselines.end();
          std::size_t n = 0;
          for (const auto& [k, v] : cell.values) {
            cell.metrics[k] = summarize(v);
            n = v.size();
          }
          cell.diverged = diverged[{f.name, shots, steps, name}];
          if (auto cal = calibration.find({f.name, shots, steps, name}); cal != calibration.end()) {
            cell.calibration = cal->second;
          }
          if (auto pr = pooled_rows.find({f.name, shots, steps, name}); pr != pooled_rows.end()) {
            const DetectionMetrics d = detection_metrics(pr->second.first, pr->second.second);
            const double rows = static_cast<double>(d.positives + d.negatives);
            cell.pooled["pooled_pr_auc"] = d.pr_auc;
            cell.pooled["pooled_prevalence"] = rows > 0 ? static_cast<double>(d.positives) / rows : 0.0;
          }
          cell.adapt_ms = n > 0 ? adapt_seconds[{f.name, shots, steps, name}] * 1e3 / static_cast<double>(n) : 0.0;
          result.cells.push_back(std::move(cell));
        }
      }
    }
  }

  // ---- paired comparisons: every learner against every baseline with the primary metric -------------
  auto find_cell = [&](const std::string& fam, int shots, int steps, const std::string& m) -> const CellResult* {
    for (const auto& c : result.cells) {
      if (c.family == fam && c.shots == shots && c.steps == steps && c.method == m) return &c;
    }
    return nullptr;
  };
  for (const auto& f : families) {
    const std::string metric = primary_metric(f);
    for (int shots : config.shots) {
      for (int steps : config.steps) {
        for (const auto& learner : config.learners) {
          const CellResult* a = find_cell(f.name, shots, steps, learner);
          if (a == nullptr || a->values.count(metric) == 0) continue;
          for (const auto& base : result.baselines) {
            const CellResult* b = find_cell(f.name, shots, steps, base);
            if (b == nullptr || b->values.count(metric) == 0) continue;
            const auto& x = a->values.at(metric);
            const auto& y = b->values.at(metric);
            if (x.size() != y.size() || x.size() < 2) continue;
            Comparison c;
            c.family = f.name;
            c.learner = learner;
            c.baseline = base;
            c.metric = metric;
            c.shots = shots;
            c.steps = steps;
            c.pairs = x.size();
            c.t_test = paired_t_test(x, y);
            c.wilcoxon = wilcoxon_signed_rank(x, y);
            c.bootstrap = bootstrap_mean_difference(
                x, y,
                derive_seed(config.seed, {name_hash(f.name), name_hash(learner), name_hash(base),
                                          static_cast<std::uint64_t>(shots), static_cast<std::uint64_t>(steps)}),
                config.bootstrap_resamples);
            c.mean_difference = c.bootstrap.estimate;
            c.cohens_d = paired_cohens_d(x, y);
            c.learner_better = lower_is_better(metric) ? c.mean_difference < 0 : c.mean_difference > 0;
            result.comparisons.push_back(c);
          }
        }
      }
    }
  }
  correct_comparisons(result.comparisons, config.alpha);

  // ---- verdicts: each learner against the strongest baseline at the headline cell -------------------
  std::map<std::pair<std::string, std::string>, HeadlineChoice> headline;
  const int middle_steps = config.steps[config.steps.size() / 2];
  for (const auto& f : families) {
    for (const auto& learner : config.learners) {
      HeadlineChoice choice;
      choice.steps = middle_steps;
      auto it = validation.find({f.name, learner});
      if (it != validation.end() && !it->second.empty()) {
        for (const auto& [steps, sn] : it->second) {
          if (sn.second > 0) choice.validation_means[steps] = sn.first / static_cast<double>(sn.second);
        }
        choice.steps = best_validation_steps(it->second, lower_is_better(primary_metric(f)), middle_steps);
        if (!choice.validation_means.empty()) choice.selected_on = "validation";
      }
      headline[{f.name, learner}] = choice;
    }
  }
  compute_verdicts(result, headline);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

void compute_verdicts(BenchmarkResult& result,
                      const std::map<std::pair<std::string, std::string>, HeadlineChoice>& headline) {
  const BenchmarkConfig& config = result.config;
  result.verdicts.clear();
  const int shots = headline_shots(config);
  for (const std::string& family : result.families) {
    const std::string metric = result.primary.at(family);
    const bool lower = lower_is_better(metric);
    for (const std::string& learner : config.learners) {
      auto h = headline.find({family, learner});
      if (h == headline.end()) continue;
      const HeadlineChoice& choice = h->second;
      const CellResult* mine = nullptr;
      for (const auto& cell : result.cells) {
        if (cell.family == family && cell.shots == shots && cell.steps == choice.steps && cell.method == learner)
          mine = &cell;
      }
      if (mine == nullptr || mine->metrics.count(metric) == 0) continue;  // learner not run on this family
      // The strongest baseline: the best test mean of the primary metric among the allowed baselines.
      const CellResult* strongest = nullptr;
      for (const auto& cell : result.cells) {
        if (!cell.baseline || cell.family != family || cell.shots != shots || cell.steps != choice.steps) continue;
        if (cell.metrics.count(metric) == 0) continue;
        if (!result.simple_baselines.empty() &&
            std::find(result.simple_baselines.begin(), result.simple_baselines.end(), cell.method) ==
                result.simple_baselines.end()) {
          continue;
        }
        if (!config.verdict_against.empty() && std::find(config.verdict_against.begin(), config.verdict_against.end(),
                                                         cell.method) == config.verdict_against.end()) {
          continue;
        }
        const double m = cell.metrics.at(metric).mean;
        if (strongest == nullptr ||
            (lower ? m < strongest->metrics.at(metric).mean : m > strongest->metrics.at(metric).mean)) {
          strongest = &cell;
        }
      }
      if (strongest == nullptr) {
        fail("benchmark: no baseline of " + family + " scores " + metric +
             (config.verdict_against.empty() ? std::string() : " among evaluation.verdict_against") +
             "; a verdict needs one");
      }
      auto comparison_with = [&](const std::string& baseline) -> const Comparison* {
        for (const auto& c : result.comparisons) {
          if (c.family == family && c.learner == learner && c.baseline == baseline && c.shots == shots &&
              c.steps == choice.steps) {
            return &c;
          }
        }
        return nullptr;
      };
      const Comparison* cmp = comparison_with(strongest->method);
      if (cmp == nullptr) continue;
      Verdict v;
      if (const Comparison* ft = comparison_with("finetune")) {
        v.has_finetune = true;
        v.finetune_difference = ft->mean_difference;
        v.finetune_p_holm = ft->p_t_holm;
      }
      v.family = family;
      v.learner = learner;
      v.metric = metric;
      v.strongest_baseline = strongest->method;
      v.shots = shots;
      v.steps = choice.steps;
      v.steps_selected_on = choice.selected_on;
      v.validation_means = choice.validation_means;
      v.pairs = cmp->pairs;
      v.learner_mean = mine->metrics.at(metric).mean;
      v.baseline_mean = strongest->metrics.at(metric).mean;
      v.difference = cmp->mean_difference;
      v.ci_low = cmp->bootstrap.low;
      v.ci_high = cmp->bootstrap.high;
      v.p = cmp->t_test.p_value;
      v.p_holm = cmp->p_t_holm;
      const bool significant = v.p_holm < config.alpha;
      v.skill = significant && cmp->learner_better;
      v.verdict =
          v.skill ? "skill" : (significant && !cmp->learner_better && v.difference != 0.0 ? "worse" : "no skill");
      result.verdicts.push_back(v);
    }
  }
}

}  // namespace metatape::eval
