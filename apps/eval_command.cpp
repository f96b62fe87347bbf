// metatape eval: evaluate learners trained by `metatape train` (their checkpoints under --out) against
// the baselines; the same report as `run`.
#include <filesystem>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "apps/commands.h"
#include "eval/report.h"

namespace metatape::apps {
namespace {

void evaluate(RunOptions options) {
  options.resume = true;
  eval::RunConfig config = resolve_run_config(options);
  for (const auto& family : config.distribution.families) {
    for (const auto& learner : config.benchmark.learners) {
      const std::string path = eval::learner_checkpoint_path(config.benchmark, 0, family, learner);
      if (!std::filesystem::exists(path)) {
        throw eval::ConfigError("eval: no checkpoint for " + learner + " on " + family + " at " + path +
                                "; train it first with: metatape train " +
                                (options.config.empty() ? "" : "--config " + options.config + " ") +
                                "--out " + config.benchmark.out_dir);
      }
    }
  }
  SigintScope sigint;
  std::string description;
  auto sources = eval::build_sources(config, &description);
  eval::ProgressBar bar(1, "eval", !options.no_progress && isatty(fileno(stderr)));
  eval::BenchmarkResult result = eval::run_benchmark(config.benchmark, sources, &bar, &interrupt_requested());
  bar.finish(result.interrupted ? "interrupted" : "done");
  result.data_description = description;
  const std::string dir = (std::filesystem::path(config.benchmark.out_dir) / "report").string();
  eval::write_report(result, dir);
  if (!options.quiet) std::cout << eval::report_markdown(result) << std::flush;
  std::fprintf(stderr, "metatape: report written to %s\n", dir.c_str());
  if (result.interrupted) throw CommandExit{interrupted};
}

}  // namespace

void register_eval(CLI::App& app) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "evaluate trained learners (checkpoints from `metatape train --out DIR`) against the "
              "baselines on fresh test episodes; writes and prints the report");
  add_run_options(*cmd, *opts);
  cmd->callback([opts] { evaluate(*opts); });
}

}  // namespace metatape::apps
