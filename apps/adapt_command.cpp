// metatape adapt: load a trained learner, draw one test episode, adapt on its support set and print
// the query predictions, the episode's metrics and the adaptation time.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "autograd/tape.h"
#include "eval/benchmark.h"
#include "eval/scoring.h"
#include "eval/training.h"

namespace metatape::apps {
namespace {

struct AdaptArgs {
  RunOptions run;
  std::string learner = "maml", family = "price_direction", checkpoint, json;
  int shots = 5, steps = -1;
  long long episode = 0;
};

void adapt(const AdaptArgs& a) {
  RunOptions ro = a.run;
  ro.families = {a.family};
  eval::RunConfig config = resolve_run_config(ro);
  // What the checkpoints under --out were trained with, when train recorded it.
  const std::string recorded = eval::resolved_config_path(config.benchmark.out_dir);
  if (a.checkpoint.empty() && std::filesystem::exists(recorded)) config = recorded_run_config(config, recorded);
  if (a.steps < -1)
    throw eval::ConfigError("adapt: --steps must be >= 0 (or left out for the learner's default), got " +
                            std::to_string(a.steps));
  if (a.steps > config.limits.max_inner_steps_x_episodes) {
    throw eval::ConfigError("adapt: --steps " + std::to_string(a.steps) +
                            " is above limits.max_inner_steps_x_episodes (" +
                            std::to_string(config.limits.max_inner_steps_x_episodes) +
                            "); use fewer steps or raise limits.max_inner_steps_x_episodes");
  }
  const eval::BenchmarkConfig& b = config.benchmark;
  const std::vector<eval::FamilySource> sources = eval::build_sources(config);
  const eval::FamilySource& family = sources.front();
  const std::string path =
      a.checkpoint.empty() ? eval::learner_checkpoint_path(b, 0, a.family, a.learner) : a.checkpoint;
  if (!std::filesystem::exists(path)) {
    throw eval::ConfigError("adapt: no checkpoint at " + path + "; train one with: metatape train --learners " +
                            a.learner + " --families " + a.family + " --out " + b.out_dir);
  }
  Generator init(1);
  auto learner = eval::make_benchmark_learner(a.learner, b, family, init);
  Generator unused(1);
  try {
    eval::resume_learner(path, *learner, unused);
  } catch (const Error& e) {
    throw eval::DataError(e.what());
  }
  Generator gen(eval::derive_seed(b.seed, {9000, static_cast<std::uint64_t>(a.episode)}));
  const eval::Episode episode = family.test_episode(a.shots, gen);
  const int steps = a.steps >= 0 ? a.steps : learner->default_adapt_steps();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> outputs;
  {
    TapeScope scope;
    const nn::ParameterList adapted = learner->adapt(episode.task, steps);
    NoGradGuard no_grad;
    outputs = learner->predict(adapted, episode.task.query_x).to_vector<double>();
  }
  const double ms = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3;
  const eval::MetricMap metrics = eval::score_episode(family, episode, outputs, b.trading);

  std::cout << a.learner << " adapted on one " << a.family << " episode (" << episode.task.support_x.dim(0)
            << " support rows, " << steps << " steps) in " << ms << " ms\n";
  const auto rows = static_cast<std::size_t>(episode.task.query_x.dim(0));
  const auto width = static_cast<std::size_t>(family.outputs);
  nlohmann::json j = {{"learner", a.learner}, {"family", a.family}, {"steps", steps},
                      {"adapt_ms", ms},       {"metrics", metrics}, {"outputs", outputs}};
  if (family.kind == tasks::TaskKind::classification) {
    const auto truth = episode.task.query_y.to_vector<std::int64_t>();
    const auto predicted = eval::argmax_rows(outputs, family.outputs);
    std::cout << "row  label  predicted\n";
    for (std::size_t r = 0; r < rows; ++r)
      std::printf("%3zu  %5lld  %9lld\n", r, static_cast<long long>(truth[r]), static_cast<long long>(predicted[r]));
    j["labels"] = truth;
    j["predicted"] = predicted;
  } else {
    const auto y = episode.task.query_y.to_vector<double>();
    std::cout << "row  target  output\n";
    for (std::size_t r = 0; r < rows; ++r) std::printf("%3zu  %8.4f  %8.4f\n", r, y[r * width], outputs[r * width]);
  }
  for (const auto& [k, v] : metrics) std::cout << k << " " << v << "\n";
  if (!a.json.empty()) {
    std::ofstream out(a.json);
    if (!out) throw eval::DataError("metatape: adapt: cannot write " + a.json);
    out << j.dump(1) << "\n";
  }
}

}  // namespace

void register_adapt(CLI::App& app) {
  auto a = std::make_shared<AdaptArgs>();
  CLI::App* cmd =
      app.add_subcommand("adapt",
                         "adapt a trained learner to one test episode's support set and print its query predictions, "
                         "metrics and adaptation time");
  add_run_options(*cmd, a->run);
  cmd->add_option("--learner", a->learner, "learner kind (its checkpoint is <out>/run0/<family>/<learner>.ckpt)");
  cmd->add_option("--family", a->family, "task family");
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint file (default: the one train wrote under --out)");
  cmd->add_option("--shots", a->shots, "support rows per class")->check(positive());
  cmd->add_option("--steps", a->steps, "adaptation steps (default: the learner's)");
  cmd->add_option("--episode", a->episode, "which test episode (seeded)");
  cmd->add_option("--json", a->json, "also write predictions and metrics to this JSON file");
  cmd->callback([a] { adapt(*a); });
}

}  // namespace metatape::apps
