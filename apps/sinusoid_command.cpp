// `metatape sinusoid`: the MAML paper's sinusoid benchmark (W2). Meta-trains the chosen learners on
// K = 10 sinusoid tasks (MLP 1-40-40-1, ReLU, meta-batch 25, one inner SGD step with lr 0.01, outer
// Adam lr 1e-3; Reptile: 5 inner SGD steps with lr 0.01 and an outer SGD step epsilon = 1 decaying
// linearly to 0 over an --iterations run, constant under --seconds), then evaluates
// on fresh tasks with K = 5 and K = 10 support points: query MSE after 0, 1, 5 and 10 inner steps,
// mean and 95% confidence interval over the evaluation tasks. The same evaluation tasks are used for
// every learner and for the "before meta-training" row. --save-prefix / --load-prefix save trained learners and
// evaluate them again without training; --sharpness adds the support-loss Hessian diagnostic (meta/sharpness.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "eval/run_config.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "meta/sharpness.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "tasks/sinusoid.h"

namespace metatape::apps {
namespace {

struct SinusoidConfig {
  std::vector<std::string> learners{"maml", "fomaml", "meta-sgd", "reptile"};
  std::int64_t iterations = 70000;
  double seconds = 0.0;  // > 0: a wall-clock budget per learner (stops at whichever comes first)
  std::int64_t meta_batch = 25;
  std::uint64_t seed = 1;
  std::int64_t eval_tasks = 600;
  std::int64_t query_rows = 100;
  std::vector<std::int64_t> shots{5, 10};
  std::vector<int> steps{0, 1, 5, 10};
  double inner_lr = 0.01;
  double outer_lr = 1e-3;
  double reptile_inner_lr = 0.01;
  int reptile_inner_steps = 5;
  double reptile_epsilon = 1.0;
  std::string json_path;
  std::string save_prefix;
  std::string init = "uniform_fan_in";  // nn/init.h; the MAML authors' code: small_normal
  std::string load_prefix;              // evaluate <prefix><learner>.ckpt instead of training
  bool sharpness = false;
  std::int64_t log_every = 1000;
};

struct Cell {
  double mean = 0.0, ci95 = 0.0, median = 0.0;
  std::int64_t diverged = 0;  // tasks whose MSE was not finite; mean and ci95 are then not reported
};

// Per-task query MSE: losses[k][task] after steps[k] inner steps.
using TaskLosses = std::vector<std::vector<double>>;

TaskLosses evaluate(meta::Learner& learner, const tasks::TaskBatch& tasks, const std::vector<int>& steps) {
  TaskLosses values(steps.size());
  for (const auto& t : tasks) {
    const auto e = learner.evaluate(t, steps);
    for (std::size_t k = 0; k < steps.size(); ++k) values[k].push_back(e[k].loss);
  }
  return values;
}

// Mean, 95% CI (1.96 standard errors) and median of per-task query MSE, per step count.
std::vector<Cell> summarise(const TaskLosses& values) {
  std::vector<Cell> cells;
  for (const auto& v : values) {
    std::int64_t bad = 0;
    for (double x : v) bad += !std::isfinite(x);
    if (bad > 0) {
      cells.push_back({0.0, 0.0, 0.0, bad});
      continue;
    }
    double m = 0.0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    double ss = 0.0;
    for (double x : v) ss += (x - m) * (x - m);
    const double sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
    std::vector<double> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t n = sorted.size();
    const double median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    cells.push_back({m, 1.96 * sd / std::sqrt(static_cast<double>(v.size())), median, 0});
  }
  return cells;
}

// --sharpness: lr * lambda_max of each task's support-loss Hessian at the meta-learned start and after
// the most inner steps, against whether adapting for the most steps made the task worse than not
// adapting (or overflowed). A model whose loss overflowed counts as infinitely sharp.
nlohmann::json sharpness_report(meta::Learner& learner, const nn::Mlp& model, double lr, const tasks::TaskBatch& set,
                                const TaskLosses& after, const std::vector<int>& steps, std::int64_t shots,
                                std::vector<std::string>& lines) {
  const std::size_t most = static_cast<std::size_t>(std::max_element(steps.begin(), steps.end()) - steps.begin());
  const std::size_t none = static_cast<std::size_t>(std::find(steps.begin(), steps.end(), 0) - steps.begin());
  auto sharpness = [&](const nn::ParameterList& params, const tasks::Task& task) {
    nn::ParameterList model_params;
    for (std::size_t i = 0; i < 2 * model.layers(); ++i) model_params.add(params.name(i), params[i].detach());
    try {
      return lr * meta::support_sharpness(model, model_params, task).lambda_max;
    } catch (const Error&) {  // support_sharpness: the loss or a product overflowed
      return std::numeric_limits<double>::infinity();
    }
  };
  struct Column {
    std::vector<double> values;
    std::int64_t above = 0, worse_and_above = 0;
  } at_start, at_end;
  std::int64_t worse = 0;
  for (std::size_t t = 0; t < set.size(); ++t) {
    const double final_loss = after[most][t];
    const bool got_worse = !std::isfinite(final_loss) || (none < steps.size() && final_loss > after[none][t]);
    worse += got_worse;
    const double start = sharpness(learner.meta_parameters(), set[t]);
    const double end = sharpness(learner.adapt(set[t], steps[most]), set[t]);
    for (auto [column, x] : {std::pair{&at_start, start}, std::pair{&at_end, end}}) {
      column->values.push_back(x);
      column->above += x > 2.0;
      column->worse_and_above += got_worse && x > 2.0;
    }
  }
  nlohmann::json out{{"tasks_worse_after_most_steps", worse}};
  for (auto [column, where] : {std::pair{&at_start, "start"}, std::pair{&at_end, "end"}}) {
    std::vector<double> sorted = column->values;
    std::sort(sorted.begin(), sorted.end());
    auto quantile = [&](double q) {
      return sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))];
    };
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%-9s K=%-3lld %-5s lr*lambda_max median %.2f, 90%% %.2f, max %.3g; above 2 on %lld of %zu tasks; "
                  "of the %lld tasks worse after %d steps than unadapted, %lld above 2",
                  learner.name().c_str(), static_cast<long long>(shots),
                  std::string(where) == "start" ? "start" : "end", quantile(0.5), quantile(0.9), sorted.back(),
                  static_cast<long long>(column->above), sorted.size(), static_cast<long long>(worse), steps[most],
                  static_cast<long long>(column->worse_and_above));
    lines.push_back(buf);
    out[where] = {{"median", quantile(0.5)},
                  {"p90", quantile(0.9)},
                  {"max", sorted.back()},
                  {"tasks_above_2", column->above},
                  {"worse_and_above_2", column->worse_and_above}};
  }
  return out;
}

std::unique_ptr<meta::Learner> build(const std::string& kind, const SinusoidConfig& c,
                                     const std::shared_ptr<const nn::Mlp>& model) {
  Generator init_gen(c.seed);
  nn::OptimizerOptions o;
  meta::LearnerOptions options;
  options.maml.inner_steps = 1;
  options.maml.inner_lr = c.inner_lr;
  options.meta_sgd.inner_steps = 1;
  options.meta_sgd.alpha_init = c.inner_lr;
  options.reptile.inner_steps = c.reptile_inner_steps;
  options.reptile.inner_lr = c.reptile_inner_lr;
  options.reptile.epsilon = c.reptile_epsilon;
  // Linear decay of epsilon to 0 over the run when its length is known in iterations.
  options.reptile.decay_steps = c.seconds > 0.0 ? 0 : c.iterations;
  if (kind == "reptile") {
    o.lr = options.reptile.epsilon;
    return meta::make_learner(kind, model, model->init(init_gen), nn::make_sgd(o), options);
  }
  o.lr = c.outer_lr;
  return meta::make_learner(kind, model, model->init(init_gen), nn::make_adam(o), options);
}

std::string fmt_cell(const Cell& c) {
  char buf[64];
  if (c.diverged > 0) {
    std::snprintf(buf, sizeof buf, "diverged (%lld)", static_cast<long long>(c.diverged));
    return buf;
  }
  if (c.mean >= 1e4) {
    std::snprintf(buf, sizeof buf, "%.2e ± %.1e", c.mean, c.ci95);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f ± %.3f", c.mean, c.ci95);
  }
  return buf;
}

void run(const SinusoidConfig& c) {
  if (c.iterations < 1 && c.seconds <= 0.0) fail("sinusoid: give --iterations >= 1 or --seconds > 0");
  if (c.meta_batch < 1 || c.eval_tasks < 2) fail("sinusoid: --meta-batch must be >= 1 and --eval-tasks >= 2");
  for (int s : c.steps) {
    if (s < 0) fail("sinusoid: --steps must be >= 0");
  }
  // Evaluation tasks: one fixed set per K, from a generator independent of the training stream.
  std::vector<tasks::TaskBatch> eval_sets;
  for (auto k : c.shots) {
    if (k < 1) fail("sinusoid: --shots must be >= 1");
    Generator eval_gen(c.seed * 7919 + 1000003 + static_cast<std::uint64_t>(k));
    tasks::SinusoidOptions o;
    o.support_rows = k;
    o.query_rows = c.query_rows;
    eval_sets.push_back(tasks::sample_sinusoid_batch(eval_gen, c.eval_tasks, o));
  }
  std::printf(
      "metatape sinusoid: MLP 1-40-40-1 ReLU, train K=10 (10 query), meta-batch %lld, inner SGD lr %g, "
      "outer Adam lr %g; %s; evaluation on %lld fresh tasks, %lld query points each\n",
      static_cast<long long>(c.meta_batch), c.inner_lr, c.outer_lr,
      c.seconds > 0.0
          ? ("budget " + std::to_string(static_cast<long long>(c.seconds)) + " s per learner" +
             (c.iterations < 1000000000 ? " (at most " + std::to_string(c.iterations) + " iterations)" : std::string()))
                .c_str()
          : (std::to_string(c.iterations) + " meta-iterations per learner").c_str(),
      static_cast<long long>(c.eval_tasks), static_cast<long long>(c.query_rows));
  std::fflush(stdout);

  nlohmann::json report;
  report["config"] = {{"meta_batch", c.meta_batch},
                      {"seed", c.seed},
                      {"eval_tasks", c.eval_tasks},
                      {"query_rows", c.query_rows},
                      {"inner_lr", c.inner_lr},
                      {"outer_lr", c.outer_lr},
                      {"init", c.init},
                      {"steps", c.steps},
                      {"shots", c.shots},
                      {"reptile_inner_lr", c.reptile_inner_lr},
                      {"reptile_inner_steps", c.reptile_inner_steps},
                      {"reptile_epsilon", c.reptile_epsilon}};
  std::vector<std::string> lines, sharpness_lines;
  for (const auto& kind : c.learners) {
    nn::MlpSpec spec{{1, 40, 40, 1}};
    spec.init = nn::parse_init(c.init);
    const auto model = std::make_shared<const nn::Mlp>(spec);
    auto learner = build(kind, c, model);
    std::vector<std::vector<Cell>> before;
    for (const auto& set : eval_sets) before.push_back(summarise(evaluate(*learner, set, c.steps)));

    Generator train_gen(c.seed + 17);
    tasks::SinusoidOptions train_options;  // K = 10 support, 10 query
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    std::int64_t it = 0;
    double last_loss = 0.0;
    if (!c.load_prefix.empty()) {
      const std::string path = c.load_prefix + kind + ".ckpt";
      try {
        meta::load_learner(path, *learner);
      } catch (const std::exception& e) {
        throw eval::DataError("metatape: sinusoid: --load-prefix: " + std::string(e.what()) +
                              " (write it with --save-prefix and the same --learners, --inner-lr and Reptile options)");
      }
      it = learner->meta_steps();
      std::printf("  %-8s loaded %s (%lld meta-steps); not trained here\n", kind.c_str(), path.c_str(),
                  static_cast<long long>(it));
    }
    while (c.load_prefix.empty() && it < c.iterations) {
      if (c.seconds > 0.0 && elapsed >= c.seconds) break;
      const bool log = c.log_every > 0 && (it + 1) % c.log_every == 0;
      const auto m =
          learner->meta_train_step(tasks::sample_sinusoid_batch(train_gen, c.meta_batch, train_options), {log});
      ++it;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (log) {
        last_loss = m.query_loss;
        if (!std::isfinite(last_loss)) fail("sinusoid: " + kind + " diverged at iteration " + std::to_string(it));
        std::printf("  %-8s iteration %7lld  %7.1f s  train query MSE %.4f\n", kind.c_str(), static_cast<long long>(it),
                    elapsed, last_loss);
        std::fflush(stdout);
      }
    }
    std::vector<std::vector<Cell>> after;
    nlohmann::json jl;
    for (std::size_t s = 0; s < eval_sets.size(); ++s) {
      const TaskLosses losses = evaluate(*learner, eval_sets[s], c.steps);
      after.push_back(summarise(losses));
      if (c.sharpness) {
        if (kind == "meta-sgd" || kind == "anil" || kind == "maml++") {
          sharpness_lines.push_back(kind + ": --sharpness needs one scalar inner rate on every parameter; skipped");
        } else {
          const double lr = kind == "reptile" ? c.reptile_inner_lr : c.inner_lr;
          jl["K" + std::to_string(c.shots[s])]["sharpness"] =
              sharpness_report(*learner, *model, lr, eval_sets[s], losses, c.steps, c.shots[s], sharpness_lines);
        }
      }
    }
    if (!c.save_prefix.empty()) meta::save_learner(c.save_prefix + kind + ".ckpt", *learner);

    jl["iterations"] = it;
    jl["seconds"] = elapsed;
    for (std::size_t s = 0; s < c.shots.size(); ++s) {
      for (int phase = 0; phase < 2; ++phase) {
        const auto& cells = phase == 0 ? before[s] : after[s];
        std::ostringstream row;
        char head[96];
        std::snprintf(head, sizeof head, "%-9s %3lld  %-6s", kind.c_str(), static_cast<long long>(c.shots[s]),
                      phase == 0 ? "before" : "after");
        row << head;
        nlohmann::json jc = nlohmann::json::array();
        for (const auto& cell : cells) {
          char buf[40];
          std::snprintf(buf, sizeof buf, "  %16s", fmt_cell(cell).c_str());
          row << buf;
          if (cell.diverged > 0) {
            jc.push_back({{"diverged_tasks", cell.diverged}});
          } else {
            jc.push_back({{"mean", cell.mean}, {"ci95", cell.ci95}, {"median", cell.median}});
          }
        }
        lines.push_back(row.str());
        jl["K" + std::to_string(c.shots[s])][phase == 0 ? "before" : "after"] = jc;
      }
    }
    report["learners"][kind] = jl;
    std::printf("  %-8s trained %lld iterations in %.1f s (%.2f ms per meta-step)\n", kind.c_str(),
                static_cast<long long>(it), elapsed, it > 0 ? 1000.0 * elapsed / static_cast<double>(it) : 0.0);
    std::fflush(stdout);
  }

  std::printf("\nQuery MSE after k inner SGD steps on K support points (mean ± 95%% CI over %lld tasks)\n",
              static_cast<long long>(c.eval_tasks));
  std::ostringstream header;
  header << "learner     K  when  ";
  for (int s : c.steps) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "  %16s", ("k = " + std::to_string(s)).c_str());
    header << buf;
  }
  std::printf("%s\n", header.str().c_str());
  for (const auto& l : lines) std::printf("%s\n", l.c_str());
  if (!sharpness_lines.empty()) {
    std::printf(
        "\nSharpness (lr * largest Hessian eigenvalue of the support loss; above 2, repeated SGD steps overshoot):\n");
    for (const auto& l : sharpness_lines) std::printf("  %s\n", l.c_str());
  }
  std::printf(
      "\"diverged (n)\": the adapted model's MSE was not finite on n tasks (e.g. learned Meta-SGD rates "
      "applied for more steps than they were trained for).\n");
  std::printf(
      "For reference, the MAML paper (Finn et al. 2017), MAML with K = 5: 0.67 / 0.38 / 0.35 after 1 / 5 / "
      "10 steps.\n");
  if (!c.json_path.empty()) {
    std::ofstream out(c.json_path);
    if (!out) throw eval::DataError("metatape: sinusoid: cannot write --json file '" + c.json_path + "'");
    out << report.dump(2) << "\n";
  }
}

}  // namespace

void register_sinusoid(CLI::App& app) {
  auto config = std::make_shared<SinusoidConfig>();
  CLI::App* cmd = app.add_subcommand(
      "sinusoid",
      "MAML paper sinusoid benchmark (W2): meta-train MAML/FOMAML/Meta-SGD/Reptile, report query MSE after 0/1/5/10 "
      "steps with 95% CIs. Quick start: metatape sinusoid --learners maml --seconds 60");
  cmd->add_option("--learners", config->learners,
                  "learners to train: " + meta::learner_names_text(", ", ", ", meta::gradient_learner))
      ->delimiter(',');
  cmd->add_option("--iterations", config->iterations, "meta-iterations per learner (the paper: 70000)")
      ->check(positive());
  cmd->add_option("--seconds", config->seconds, "wall-clock training budget per learner, in seconds (0 = none)")
      ->check(non_negative());
  cmd->add_option(
      "--minutes",
      [config](const CLI::results_t& r) {
        char* end = nullptr;
        const double minutes = std::strtod(r.at(0).c_str(), &end);
        if (r.at(0).empty() || *end != '\0' || !std::isfinite(minutes) || minutes < 0) return false;
        config->seconds = 60.0 * minutes;
        return true;
      },
      "training budget per learner, in minutes");
  cmd->add_option("--meta-batch", config->meta_batch, "tasks per meta-step")->check(positive());
  cmd->add_option("--seed", config->seed, "seed for initialisation, training and evaluation tasks");
  cmd->add_option("--eval-tasks", config->eval_tasks, "fresh evaluation tasks per K")->check(CLI::Range(2, 1000000));
  cmd->add_option("--query-rows", config->query_rows, "query points per evaluation task")->check(positive());
  cmd->add_option("--shots", config->shots, "support sizes K to evaluate")->delimiter(',');
  cmd->add_option("--steps", config->steps, "inner-step counts to report")->delimiter(',');
  cmd->add_option("--inner-lr", config->inner_lr, "inner SGD learning rate (Meta-SGD: initial alpha)");
  cmd->add_option("--outer-lr", config->outer_lr, "outer Adam learning rate");
  cmd->add_option("--init", config->init,
                  "initialiser of the MLP (nn/init.h): uniform_fan_in (PyTorch's Linear, the default) or "
                  "small_normal (truncated N(0, 0.01^2), zero biases: the MAML authors' code), ...")
      ->check(CLI::IsMember(
          {"uniform_fan_in", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal", "small_normal"}));
  cmd->add_option("--reptile-inner-lr", config->reptile_inner_lr, "Reptile: inner SGD learning rate");
  cmd->add_option("--reptile-inner-steps", config->reptile_inner_steps, "Reptile: inner SGD steps per task")
      ->check(positive());
  cmd->add_option("--reptile-epsilon", config->reptile_epsilon, "Reptile: outer step size epsilon")->check(positive());
  cmd->add_option("--log-every", config->log_every, "print the training loss every N iterations (0 = never)");
  cmd->add_option("--json", config->json_path, "also write the results as JSON to this file");
  cmd->add_option("--save-prefix", config->save_prefix, "save each trained learner to <prefix><learner>.ckpt");
  cmd->add_option("--load-prefix", config->load_prefix,
                  "skip training: evaluate the learners saved as <prefix><learner>.ckpt (by --save-prefix)");
  cmd->add_flag("--sharpness", config->sharpness,
                "also report lr * lambda_max of each evaluation task's support-loss Hessian at the meta-learned "
                "start (MAML, FOMAML, Reptile)");
  cmd->callback([config] {
    if (config->seconds > 0.0 && config->iterations == 70000) config->iterations = 1000000000;
    run(*config);
  });
}

}  // namespace metatape::apps
