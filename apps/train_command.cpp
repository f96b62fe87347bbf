// metatape train: meta-train the configured learners on the configured families, with per-step JSONL
// logs, periodic checkpoints, Ctrl-C = checkpoint and exit 130, and bit-identical --resume. The
// checkpoints are where `metatape eval` and `run --resume` look for them (<out>/run0/<family>/).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "apps/commands.h"
#include "eval/benchmark.h"

namespace metatape::apps {
namespace {

struct TrainArgs {
  RunOptions run;
  long long checkpoint_every = 50;
};

void train(const TrainArgs& args) {
  eval::RunConfig config = resolve_run_config(args.run);
  SigintScope sigint;
  const std::vector<eval::FamilySource> sources = eval::build_sources(config);
  const eval::BenchmarkConfig& b = config.benchmark;
  if (b.resume) check_resumable(config, sources, 1);
  write_resolved_config(config);
  eval::ProgressBar bar(static_cast<std::int64_t>(sources.size() * b.learners.size()) * b.meta_steps, "train",
                        progress_mode(args.run));
  std::int64_t offset = 0;
  for (std::size_t fi = 0; fi < sources.size(); ++fi) {
    for (std::size_t li = 0; li < b.learners.size(); ++li) {
      eval::TrainingRecord record;
      bool stopped = false;
      auto learner = eval::train_benchmark_learner(b, sources[fi], fi, li, 0, &bar, offset, &interrupt_requested(),
                                                   record, stopped, args.checkpoint_every);
      offset += b.meta_steps;
      if (stopped) {
        bar.finish("interrupted");
        std::fprintf(stderr,
                     "metatape: interrupted at %s/%s step %lld; checkpoint saved to %s; continue "
                     "with the same command plus --resume\n",
                     sources[fi].name.c_str(), record.learner.c_str(), static_cast<long long>(record.steps),
                     eval::learner_checkpoint_path(b, 0, sources[fi].name, record.learner).c_str());
        throw CommandExit{interrupted};
      }
      std::cout << sources[fi].name << " " << record.learner << ": " << record.steps << " meta-steps, "
                << record.seconds << " s, " << record.tasks_per_second << " tasks/s, final query loss "
                << record.final_query_loss;
      if (record.final_accuracy >= 0) std::cout << ", accuracy " << record.final_accuracy;
      std::cout << ", gradient flags " << record.vanishing_flags << " vanishing / " << record.exploding_flags
                << " exploding\n  checkpoint " << eval::learner_checkpoint_path(b, 0, sources[fi].name, record.learner)
                << "\n  log " << record.log_path << "\n";
    }
  }
  bar.finish("done");
  write_sampler_stats(config, sources);
}

}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd =
      app.add_subcommand("train",
                         "meta-train the configured learners (per family) with JSONL metrics, gradient diagnostics "
                         "and checkpoints; Ctrl-C saves a checkpoint and exits with 130; --resume continues "
                         "bit-identically");
  add_run_options(*cmd, args->run);
  cmd->add_option("--checkpoint-every", args->checkpoint_every, "meta-steps between checkpoints (0: end only)")
      ->check(non_negative());
  cmd->callback([args] { train(*args); });
}

}  // namespace metatape::apps
