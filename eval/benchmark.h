// The few-shot benchmark: learners x task families x shots x adaptation steps x runs x episodes.
//
// Per run r and family f: every learner is meta-trained (eval/training.h) from its own seed, and with
// validate_every > 0 keeps (select_best) the meta-parameters of its best evaluation on
// validation_episodes validation-split episodes (the same episodes for every learner of the run and
// family; TrainingRecord says which step); the
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
// learner against every baseline on the family's primary metric (eval/scoring.h: a proper scoring
// rule) per (family, shots, steps): mean difference (learner - baseline), percentile bootstrap
// interval, paired t-test, Wilcoxon signed-rank, Cohen's d; p-values Holm-corrected across all
// comparisons of the report (separately for the t and the Wilcoxon p-values). A comparison is
// "significant" when its Holm-corrected t-test p is below alpha.
//
// Verdicts (the headline; docs/evaluation.md): per (family, learner), at the headline cell: shots =
// config.headline_shots (0: the middle of `shots`) and the adaptation steps the learner scores best
// with on `selection_episodes` validation-split episodes (selection happens before the test episodes
// are scored; without a validation split, or with selection_episodes = 0, the middle of `steps`).
// The learner is compared with the family's STRONGEST simple baseline there: among the family's
// fitted baselines (eval/baselines.h: class prior, majority, persistence, threshold rule; support
// mean, EWMA, HAR-RV; equal weight, minimum variance) the one with the best test mean of the primary
// metric, which can only make the test harder for the learner. scratch and finetune are learners of
// another kind, not simple baselines: the verdict also reports the difference to finetune (does
// meta-learning add anything over pre-training plus fine-tuning?) without making it the rule. The verdict is "skill" when the learner is better
// and that comparison's Holm-corrected paired t-test p (corrected with everything else the report
// tests) is below alpha, "worse" when the baseline is better with the same significance, else
// "no skill". verdict_against lists baseline names to compare with instead of all of them; it exists
// so the noise self-test can show that a weakened rule fails (never weaken it for a real report).
#pragma once

#include <atomic>
#include <cmath>
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
#include "nn/temporal_encoder.h"

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
  // Checkpoint selection on the validation split (eval/training.h): every validate_every meta-steps
  // and at the last one, the learner is scored on validation_episodes validation episodes with the
  // headline shots and its default inner steps; with select_best the best evaluation's
  // meta-parameters are the ones tested and saved. validate_every 0: off.
  std::int64_t validate_every = 100;
  int validation_episodes = 50;
  bool select_best = true;
  // The network of every learner and of the scratch / finetune baselines (make_network):
  //   "mlp":      an MLP with `hidden` layers (any feature set);
  //   "temporal": nn::TemporalEncoder over raw windows (tasks.features: raw_window); `temporal` gives
  //               channels, layers and kernel, make_network sets in_channels, window, out_features
  //               and embedding per family. `activation` applies to both.
  std::string model = "mlp";
  nn::TemporalSpec temporal;
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

  // Verdicts (see the header comment).
  int headline_shots = 0;                    // 0: the middle of `shots`; otherwise one of `shots`
  int selection_episodes = 100;              // validation episodes for choosing the headline steps; 0: off
  std::vector<std::string> verdict_against;  // empty: every baseline (the honest rule)

  // Output: per-learner JSONL logs and checkpoints go under out_dir (empty: none). With resume set, a
  // learner whose checkpoint exists continues from it (finished ones are not retrained).
  std::string out_dir;
  bool resume = false;
  // Evaluate only (`metatape eval`): every learner is loaded from its checkpoint as it is
  // (load_benchmark_learner); nothing is trained and nothing under out_dir is written.
  bool evaluate_only = false;
};

struct CellResult {
  std::string family, method;
  bool baseline = false;
  int shots = 0, steps = 0;
  std::map<std::string, Summary> metrics;
  std::map<std::string, std::vector<double>> values;  // per pooled episode, same order for every method
  // Metrics computed once over all test rows of the cell, not averaged over episodes: for the
  // arbitrage families "pooled_pr_auc" (average precision of P(class 1)) and "pooled_prevalence"
  // (the fraction of positive rows: the PR-AUC of a predictor with no skill).
  std::map<std::string, double> pooled;
  // Classification: reliability of the predicted probabilities over every (test row, class) pair of
  // the cell, in kCalibrationBins equal-width bins of the predicted probability: count, summed
  // prediction and summed outcome (observed frequency = outcomes / count).
  struct CalibrationBin {
    std::int64_t count = 0;
    double predicted = 0.0, outcomes = 0.0;
  };
  std::vector<CalibrationBin> calibration;
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

struct Verdict {
  std::string family, learner, metric, strongest_baseline;
  int shots = 0, steps = 0;
  std::string steps_selected_on;           // "validation" (best validation mean of the primary metric) or "fixed"
  std::map<int, double> validation_means;  // steps -> validation mean of the primary metric
  std::size_t pairs = 0;
  double learner_mean = 0.0, baseline_mean = 0.0;
  double difference = 0.0;             // learner - baseline, metric units (negative is better for losses)
  double ci_low = 0.0, ci_high = 0.0;  // bootstrap percentile interval of the difference
  double p = 1.0, p_holm = 1.0;        // paired t-test, and Holm-corrected over the whole report
  bool skill = false;
  // Against finetune at the same cell (when it was run): difference, Holm-corrected p.
  bool has_finetune = false;
  double finetune_difference = 0.0, finetune_p_holm = 1.0;
  std::string verdict = "no skill";  // "skill", "no skill" or "worse"
};

constexpr int kCalibrationBins = 10;

// Where each test episode came from (the same episodes are scored by every method of a family).
struct EpisodeRecord {
  std::string family;
  int run = 0, shots = 0, index = 0;
  std::vector<std::string> symbols;
  std::int64_t support_begin_ms = 0, support_end_ms = 0, query_begin_ms = 0, query_end_ms = 0;
};

struct TrainingRecord {
  std::string family, learner;
  int run = 0;
  std::int64_t steps = 0;
  double seconds = 0.0, tasks_per_second = 0.0, final_query_loss = 0.0, adaptation_ms = 0.0;
  double final_accuracy = -1.0;  // -1 when not a classification family
  std::int64_t vanishing_flags = 0, exploding_flags = 0;
  std::string log_path;
  // Checkpoint selection (eval/training.h): the meta-step whose meta-parameters were tested and saved
  // (the best validation evaluation with select_best, else the last step) and its validation value of
  // validation_metric; 0, NaN and "" when no validation ran.
  std::string validation_metric;
  std::int64_t selected_step = 0;
  double selected_validation_value = std::nan("");
};

struct BenchmarkResult {
  std::string data_description;  // e.g. "simulator seed 7" or the data directory
  BenchmarkConfig config;
  std::vector<std::string> families, methods, baselines;
  std::vector<std::string> simple_baselines;     // the fitted family baselines verdicts compare with
  std::map<std::string, std::string> primary;    // family -> primary metric
  std::map<std::string, std::string> reference;  // family -> "buy_and_hold" / "equal_weight" / ""
  std::vector<CellResult> cells;                 // learners, baselines and reference strategies
  std::vector<Comparison> comparisons;
  std::vector<Verdict> verdicts;        // one per (family, learner) that was evaluated
  std::vector<EpisodeRecord> episodes;  // every test episode, in scoring order
  std::vector<TrainingRecord> training;
  // One stitched test-split equity curve per (price_direction / market_regime family, method, asset,
  // run), plus buy-and-hold (run 0); empty when walk_forward.enabled is false.
  std::vector<EquityCurve> walk_forward;
  double seconds = 0.0;
  bool interrupted = false;
};

// The network for a family (config.model): an MLP with config.hidden layers, or a TemporalEncoder
// over the family's raw windows (family.window; channels = feature_dim / window). The output width is
// the family's outputs; with `embedding` (metric learners) the MLP ends at its last hidden width and
// the temporal encoder has no head (its width is temporal.channels). Throws naming the keys when
// config.model is temporal and the family's rows are not raw windows. Exposed for the CLI and tests.
std::shared_ptr<const nn::Model> make_network(const BenchmarkConfig& config, const FamilySource& family,
                                              bool embedding);
std::unique_ptr<meta::Learner> make_benchmark_learner(const std::string& kind, const BenchmarkConfig& config,
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
std::unique_ptr<meta::Learner> train_benchmark_learner(const BenchmarkConfig& config, const FamilySource& family,
                                                       std::size_t family_index, std::size_t learner_index, int run,
                                                       ProgressBar* progress, std::int64_t progress_offset,
                                                       const std::atomic<bool>* interrupt, TrainingRecord& record,
                                                       bool& interrupted, std::int64_t checkpoint_every = 0);

// Builds learner config.learners[learner_index] as train_benchmark_learner does and loads its
// checkpoint, without training and without writing anything: `record` gets the checkpoint's step and
// the last metrics of its JSONL log (when present). Throws naming the file when there is no
// checkpoint or it does not fit (eval/training.cpp).
std::unique_ptr<meta::Learner> load_benchmark_learner(const BenchmarkConfig& config, const FamilySource& family,
                                                      std::size_t family_index, std::size_t learner_index, int run,
                                                      TrainingRecord& record);

// Derives a seed from a base seed and a path of integers (stable across platforms).
std::uint64_t derive_seed(std::uint64_t base, std::initializer_list<std::uint64_t> path);

// Runs the benchmark. Stops early (result.interrupted) when `interrupt` becomes true; trained learners'
// checkpoints are on disk when out_dir is set.
BenchmarkResult run_benchmark(const BenchmarkConfig& config, const std::vector<FamilySource>& families,
                              ProgressBar* progress = nullptr, const std::atomic<bool>* interrupt = nullptr);

// Recomputes Holm-corrected p-values and significance over result.comparisons (run_benchmark does).
void correct_comparisons(std::vector<Comparison>& comparisons, double alpha);

// Fills result.verdicts from result.cells and result.comparisons (already Holm-corrected), given each
// (family, learner)'s headline steps and validation means. run_benchmark calls it; exposed for tests.
struct HeadlineChoice {
  int steps = 0;
  std::string selected_on = "fixed";
  std::map<int, double> validation_means;
};
void compute_verdicts(BenchmarkResult& result,
                      const std::map<std::pair<std::string, std::string>, HeadlineChoice>& headline);

// The headline shots value of a config (headline_shots, or the middle of shots).
int headline_shots(const BenchmarkConfig& config);

}  // namespace metatape::eval
