// The few-shot benchmark: learners x task families x shots x adaptation steps x runs x episodes.
//
// Per run r and family f: every learner is meta-trained (eval/training.h) from its own seed; the
// fine-tune baseline's network is pre-trained on the same family with the same budget (meta_steps x
// meta_batch tasks). Then, per shots value, `episodes` test episodes are drawn once from a generator
// derived from (seed, r, f, shots) and every method (learners and baselines) is scored on the same
// episodes for every steps value. Episodes of all runs are pooled for the aggregates and the paired
// tests (pairs are (run, episode)).
//
// Metric learners run on classification families only (learner_fits); other pairs are skipped. An
// adaptation that produces a non-finite output is counted as diverged and scored as zero-skill.
//
// Aggregates per (family, shots, steps, method, metric): mean, sd, 95% t interval. Comparisons: every
// learner against every baseline on the family's primary metric (eval/scoring.h) per (family, shots,
// steps): mean difference (learner - baseline), percentile bootstrap interval, paired t-test, Wilcoxon
// signed-rank, Cohen's d; p-values Holm-corrected across all comparisons of the report (separately for
// the t and the Wilcoxon p-values). A comparison is "significant" when its Holm-corrected t-test p is
// below alpha.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eval/episodes.h"
#include "eval/metrics.h"
#include "eval/progress.h"
#include "eval/statistics.h"
#include "eval/walk_forward.h"
#include "meta/learners.h"
#include "nn/mlp.h"

namespace metatape::eval {

struct BenchmarkConfig {
  std::vector<std::string> learners = {"maml", "meta-sgd", "protonet"};
  std::vector<int> shots = {1, 5, 10};
  std::vector<int> steps = {1, 5, 10};
  int runs = 1;
  int episodes = 600;
  std::uint64_t seed = 1;

  // Meta-training (per learner, family and run).
  std::int64_t meta_steps = 200;
  std::int64_t meta_batch = 8;
  std::int64_t train_shots = 5;
  std::int64_t diagnose_every = 50;
  std::vector<std::int64_t> hidden = {64, 64};
  std::string activation = "relu";
  std::string outer_optimizer = "adam";
  double outer_lr = 1e-3;
  double clip_norm = 10.0;
  meta::LearnerOptions learner_options;  // inner steps and learning rates used while meta-training

  // Baselines: SGD learning rate of scratch and finetune.
  double baseline_lr = 0.05;

  TradingConfig trading;
  // Walk-forward trading on the test split (eval/walk_forward.h); run_benchmark fills its shots (when
  // 0), steps, trading and seed from this config.
  WalkForwardConfig walk_forward;
  int bootstrap_resamples = 2000;
  double alpha = 0.05;

  // Output: per-learner JSONL logs and checkpoints go under out_dir (empty: none). With resume set, a
  // learner whose checkpoint exists continues from it (finished ones are not retrained).
  std::string out_dir;
  bool resume = false;
};

struct CellResult {
  std::string family, method;
  bool baseline = false;
  int shots = 0, steps = 0;
  std::map<std::string, Summary> metrics;
  std::map<std::string, std::vector<double>> values;  // per pooled episode, same order for every method
  double adapt_ms = 0.0;  // mean wall time per episode of this method at this steps count
  // Episodes whose adaptation diverged (a non-finite output): they are scored as the zero-skill
  // prediction of the episode, and counted here so the report shows them.
  std::int64_t diverged = 0;
};

struct Comparison {
  std::string family, learner, baseline, metric;
  int shots = 0, steps = 0;
  std::size_t pairs = 0;
  double mean_difference = 0.0;  // learner - baseline
  Interval bootstrap;
  TestResult t_test, wilcoxon;
  double cohens_d = 0.0;
  double p_t_holm = 1.0, p_wilcoxon_holm = 1.0;
  bool significant = false;
  bool learner_better = false;  // direction of the mean difference, taking lower_is_better into account
};

struct TrainingRecord {
  std::string family, learner;
  int run = 0;
  std::int64_t steps = 0;
  double seconds = 0.0, tasks_per_second = 0.0, final_query_loss = 0.0, adaptation_ms = 0.0;
  double final_accuracy = -1.0;  // -1 when not a classification family
  std::int64_t vanishing_flags = 0, exploding_flags = 0;
  std::string log_path;
};

struct BenchmarkResult {
  std::string data_description;  // e.g. "simulator seed 7" or the data directory
  BenchmarkConfig config;
  std::vector<std::string> families, methods, baselines;
  std::map<std::string, std::string> primary;     // family -> primary metric
  std::map<std::string, std::string> reference;   // family -> "buy_and_hold" / "equal_weight" / ""
  std::vector<CellResult> cells;                  // learners, baselines and reference strategies
  std::vector<Comparison> comparisons;
  std::vector<TrainingRecord> training;
  // One stitched test-split equity curve per (price_direction / market_regime family, method, asset,
  // run), plus buy-and-hold (run 0); empty when walk_forward.enabled is false.
  std::vector<EquityCurve> walk_forward;
  double seconds = 0.0;
  bool interrupted = false;
};

// Builds the learner `kind` for a family (an MLP with config.hidden layers; the output width is the
// family's outputs, or the last hidden width for metric learners). Exposed for the CLI's train and
// adapt commands.
std::shared_ptr<nn::Mlp> make_network(const BenchmarkConfig& config, const FamilySource& family,
                                      bool embedding);
std::unique_ptr<meta::Learner> make_benchmark_learner(const std::string& kind,
                                                      const BenchmarkConfig& config,
                                                      const FamilySource& family, Generator& gen);
bool is_metric_learner(const std::string& kind);
// Metric learners (protonet, matching) run on classification families only; the benchmark skips the
// other combinations (no cells, no comparisons).
bool learner_fits(const std::string& kind, const FamilySource& family);

// Where run_benchmark and `metatape train` keep learner `kind`'s checkpoint and JSONL log for a run
// and family: <out_dir>/run<run>/<family>/<kind>.{ckpt,jsonl}. Empty when out_dir is empty.
std::string learner_checkpoint_path(const BenchmarkConfig& config, int run, const std::string& family,
                                    const std::string& kind);
std::string learner_log_path(const BenchmarkConfig& config, int run, const std::string& family,
                             const std::string& kind);

// Builds learner config.learners[learner_index] for families[family_index] of run `run` with the seeds
// run_benchmark uses, resumes it from its checkpoint when config.resume is set and one exists, and
// meta-trains it to config.meta_steps (eval/training.h). `record` receives the training summary.
// Returns the learner; record->interrupted-style stop is reported through `interrupted`.
std::unique_ptr<meta::Learner> train_benchmark_learner(const BenchmarkConfig& config,
                                                       const FamilySource& family,
                                                       std::size_t family_index,
                                                       std::size_t learner_index, int run,
                                                       ProgressBar* progress,
                                                       std::int64_t progress_offset,
                                                       const std::atomic<bool>* interrupt,
                                                       TrainingRecord& record, bool& interrupted,
                                                       std::int64_t checkpoint_every = 0);

// Derives a seed from a base seed and a path of integers (stable across platforms).
std::uint64_t derive_seed(std::uint64_t base, std::initializer_list<std::uint64_t> path);

// Runs the benchmark. Stops early (result.interrupted) when `interrupt` becomes true; trained learners'
// checkpoints are on disk when out_dir is set.
BenchmarkResult run_benchmark(const BenchmarkConfig& config, const std::vector<FamilySource>& families,
                              ProgressBar* progress = nullptr,
                              const std::atomic<bool>* interrupt = nullptr);

// Recomputes Holm-corrected p-values and significance over result.comparisons (run_benchmark does).
void correct_comparisons(std::vector<Comparison>& comparisons, double alpha);

}  // namespace metatape::eval
