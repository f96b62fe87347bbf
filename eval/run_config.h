// The configuration of a benchmark run, read from YAML with command-line overrides, and the data it
// runs on (the built-in simulator or market files).
//
// YAML layout (every key optional; unknown keys are errors; see configs/main.yaml for all of them):
//   seed: 1
//   out: runs/main
//   learners: [maml, meta-sgd, protonet]
//   data:       source (simulator | files), root, files (paths, or maps {path, exchange, symbol,
//               interval}), align (intersect | forward_fill), policy (fail | drop | repair),
//               simulator: {seed, assets, exchanges, bars}
//   tasks:      families, symbols, query_size, horizon, stride, embargo, train_end, validation_end,
//               holdout_symbols, direction_threshold, regime_trend_threshold, portfolio_assets,
//               rebalance, features (indicators | raw_window), raw_window: {length}
//   training:   meta_steps, meta_batch, train_shots, outer_optimizer, outer_lr, clip_norm, inner_lr,
//               inner_steps, first_order, reptile_steps, model (mlp | temporal), hidden (mlp),
//               temporal: {channels, layers, kernel}, activation, diagnose_every
//   evaluation: shots, steps, runs, episodes, baseline_lr, bootstrap_resamples, alpha, fee_rate,
//               slippage_rate, headline_shots, selection_episodes, verdict_against (eval/benchmark.h)
//   sampler:    workers, prefetch, cache_dir, balance_difficulty, min_quality (how training builds its
//               tasks, tasks::Sampler; see make_market_sources)
//   limits:     max_parameters, max_rows, max_inner_steps_x_episodes, max_bars (see ResourceLimits)
// Every value is range-checked here, so a bad one is refused before anything runs, naming its key.
// A key given twice in one map, or an empty value (`inner_lr:` or --set training.inner_lr=), is an
// error: neither falls back silently to a default.
// Overrides are "section.key=value" strings whose value is parsed as YAML ("training.hidden=[32,32]").
#pragma once

#include <map>
#include <string>
#include <vector>

#include "eval/benchmark.h"
#include "eval/episodes.h"
#include "kernels/error.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"

namespace metatape::eval {

// A configuration the user must fix (exit code 2 in the CLI).
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error("metatape: config: " + message) {}
};
// Input data that cannot be used (exit code 3 in the CLI).
class DataError : public Error {
 public:
  explicit DataError(const std::string& message) : Error(message) {}
};

struct DataFile {
  std::string path, exchange, symbol, interval;
};

struct DataConfig {
  std::string source = "simulator";
  std::string root;  // files are relative to it (when not absolute)
  std::vector<DataFile> files;
  std::string align = "intersect";
  std::string policy = "repair";
  tasks::SimulatorConfig simulator;
};

// Bounds on the work and memory a configuration may ask for (section `limits:`). A value past one is
// refused at set-up with the key, its value and the limit key to raise; none of these changes results.
struct ResourceLimits {
  // Network parameters of one learner (input features x hidden layers x outputs, weights and biases).
  std::int64_t max_parameters = 10'000'000;
  // Task rows held at once: training.meta_batch x (training.train_shots + tasks.query_size) per
  // meta-step, and evaluation.episodes x (largest evaluation.shots + tasks.query_size) per shots value.
  std::int64_t max_rows = 10'000'000;
  // Adaptation steps per batch: training.inner_steps (and reptile_steps) x training.meta_batch (what a
  // meta-step keeps on the tape), and sum(evaluation.steps) x evaluation.episodes x the number of
  // evaluation.shots values x evaluation.runs (what the evaluation runs per learner).
  std::int64_t max_inner_steps_x_episodes = 1'000'000;
  // Simulated bars: data.simulator.bars x assets x exchanges.
  std::int64_t max_bars = 10'000'000;
};

struct RunConfig {
  DataConfig data;
  tasks::FeatureConfig features;  // tasks.features and tasks.raw_window (the indicator lists: defaults)
  tasks::DistributionConfig distribution;
  BenchmarkConfig benchmark;
  tasks::SamplerConfig sampler = MarketSourceOptions{}.sampler;  // seed and split unused
  ResourceLimits limits;
  std::string source_text;  // the YAML after overrides (only the keys given), stored with results
};

// The name of the file `metatape train` writes beside its checkpoints (<out>/config.resolved.yaml):
// every key of the configuration with the value training used (resolved_config_yaml), which
// `metatape eval` reads back instead of re-deriving it from the command line.
inline constexpr const char* kResolvedConfigName = "config.resolved.yaml";
std::string resolved_config_path(const std::string& out_dir);
// Every key with its value, as YAML that parse_run_config reads back to the same configuration (keys
// given in source_text that this writer does not know are carried over as given).
std::string resolved_config_yaml(const RunConfig& config);
// Flattens YAML maps to "section.key" -> value (sequences and scalars as flow YAML text).
std::map<std::string, std::string> flatten_config(const std::string& yaml_text);
// Whether a key only changes the evaluation (evaluation.*, limits.*, out, data.root) or no result at
// all (sampler.workers, sampler.prefetch, sampler.cache_dir), so `eval` may take it from its command
// line instead of the recorded training configuration.
bool is_evaluation_key(const std::string& key);

// path empty: the built-in defaults (those of configs/main.yaml). Throws ConfigError naming the file,
// the key, the value and the expected form or range (and, for ResourceLimits, the limit key).
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_run_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                           const std::string& name = "<config>");

// Loads or simulates the market and builds one source per configured family. `description` receives
// a one-line description of the data. Loader failures are rethrown as DataError; a market that cannot
// serve a family (fewer symbols than tasks.portfolio_assets, arbitrage without two exchanges) and a
// network over limits.max_parameters are ConfigErrors naming the key.
std::vector<FamilySource> build_sources(const RunConfig& config, std::string* description = nullptr);

}  // namespace metatape::eval
