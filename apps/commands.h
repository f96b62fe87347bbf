// Each metatape subcommand lives in apps/<name>_command.cpp and registers itself on the CLI here;
// apps/metatape_command.cpp builds the whole command line (run_cli), so tests drive it in-process.
//
// Exit codes (docs/cli.md): 0 success, 1 runtime failure, 2 bad usage or configuration (unknown
// option, bad YAML, unknown key or value), 3 bad input data (missing, unreadable or invalid market
// file), 130 interrupted by Ctrl-C (SIGINT) after a checkpoint was saved.
#pragma once

#include <atomic>
#include <csignal>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "eval/run_config.h"

namespace metatape::apps {

enum ExitCode : int { ok = 0, runtime_failure = 1, bad_usage = 2, bad_data = 3, interrupted = 130 };

// Thrown by a subcommand to end with `code` (the message, if any, has been printed already).
struct CommandExit {
  int code = ok;
};

// Set by the SIGINT (and SIGUSR1, which mpirun forwards) handler while a SigintScope is alive;
// long-running work polls it, saves a checkpoint and ends with ExitCode::interrupted. A second signal
// while the flag is set exits at once.
std::atomic<bool>& interrupt_requested();
class SigintScope {
 public:
  SigintScope();
  ~SigintScope();
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;

 private:
  void (*previous_)(int) = nullptr;
  void (*previous_usr1_)(int) = nullptr;
};

// Options shared by run, bench, train and eval (apps/run_command.cpp).
struct RunOptions {
  std::string config;
  std::vector<std::string> set;  // "section.key=value" overrides, applied in order
  std::string out, data;
  long long seed = -1, episodes = -1, meta_steps = -1;
  std::vector<std::string> learners, families;
  bool resume = false, no_progress = false, progress = false, quiet = false;
};
void add_run_options(CLI::App& command, RunOptions& options);
// Option checks whose messages say what is needed ("--bars must be a number > 0, got '0'"); CLI11's
// PositiveNumber says "Value 0 not in range 0.000000 to 1.79769e+308".
CLI::Validator positive();
CLI::Validator non_negative();
// The bar on a terminal; with --progress and stderr not a terminal, whole lines every 10 s; nothing
// with --no-progress or when stderr is not a terminal.
eval::ProgressMode progress_mode(const RunOptions& options);
// Writes <out>/config.resolved.yaml (eval/run_config.h), atomically; train and run call it before
// training so that `metatape eval` reads what the checkpoints were trained with.
void write_resolved_config(const eval::RunConfig& config);
// Writes <out>/sampler_stats.json, {family: {built, memory_hits, disk_hits, disk_rebuilt,
// skipped_quality}} of the task samplers behind meta-training in this process (tasks::SamplerStats),
// and prints one line per family to stderr.
void write_sampler_stats(const eval::RunConfig& config, const std::vector<eval::FamilySource>& sources);
// The configuration recorded at <out>/config.resolved.yaml (recorded_path) with the evaluation keys
// and learner / family subsets of `requested` (the command line's); throws ConfigError listing every
// training key that differs from the recorded value (apps/eval_command.cpp; eval and adapt use it).
eval::RunConfig recorded_run_config(const eval::RunConfig& requested, const std::string& recorded_path);
// For --resume: loads every existing checkpoint of runs 0..runs-1 into a fresh learner and throws
// DataError (exit 3) naming the file when one cannot be resumed, before anything is written.
void check_resumable(const eval::RunConfig& config, const std::vector<eval::FamilySource>& sources, int runs);
// Loads the YAML (or the built-in defaults when options.config is empty) and applies --set and the
// shortcut options; --data DIR sets data.root (the market files of the config are read from DIR).
eval::RunConfig resolve_run_config(const RunOptions& options);

// What run_cli prints when std::bad_alloc reaches it (exit 1): memory ran out, and which limit keys
// bound memory.
std::string out_of_memory_message();

// Parses and runs one command line (args without the program name); returns the exit code.
int run_cli(const std::vector<std::string>& args);

void register_sinusoid(CLI::App& app);
void register_omniglot(CLI::App& app);
void register_run(CLI::App& app);  // run and bench (apps/run_command.cpp)
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_adapt(CLI::App& app);
void register_data(CLI::App& app);
void register_simulate(CLI::App& app);
void register_selftest(CLI::App& app);  // selftest noise (apps/selftest_command.cpp)
// apps/serve_command.cpp; called by run_cli when METATAPE_WITH_SERVE is defined (apps/CMakeLists.txt
// must then link the serve and capi libraries).
void register_serve(CLI::App& app);

}  // namespace metatape::apps
