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
//               rebalance
//   training:   meta_steps, meta_batch, train_shots, outer_optimizer, outer_lr, clip_norm, inner_lr,
//               inner_steps, first_order, reptile_steps, hidden, activation, diagnose_every
//   evaluation: shots, steps, runs, episodes, baseline_lr, bootstrap_resamples, alpha, fee_rate,
//               slippage_rate, headline_shots, selection_episodes, verdict_against (eval/benchmark.h)
// Overrides are "section.key=value" strings whose value is parsed as YAML ("training.hidden=[32,32]").
#pragma once

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

struct RunConfig {
  DataConfig data;
  tasks::DistributionConfig distribution;
  BenchmarkConfig benchmark;
  std::string source_text;  // the YAML after overrides, stored with results
};

// path empty: the built-in defaults (those of configs/main.yaml). Throws ConfigError naming the file,
// the key and the expected form.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_run_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                           const std::string& name = "<config>");

// Loads or simulates the market and builds one source per configured family. `description` receives
// a one-line description of the data. Loader failures are rethrown as DataError.
std::vector<FamilySource> build_sources(const RunConfig& config, std::string* description = nullptr);

}  // namespace metatape::eval
