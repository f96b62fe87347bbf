// Meta-training with monitoring, checkpoints and clean interruption.
//
// train_learner runs meta-steps of a learner on a family's meta-train batches until `meta_steps`
// steps are done (counting those already in learner.meta_steps()). Per step it appends one JSON line
// to `jsonl_path` (when set):
//   {"step", "query_loss", "support_loss", "accuracy" (classification), "grad_norm",
//    "tasks_per_second", "step_seconds", "adaptation_ms", "lr"}
// where adaptation_ms is the time of one learner.adapt() on the batch's first task, measured every
// `diagnose_every` steps (and carried forward in between). Every `diagnose_every` steps a
// "diagnostics" line is added too (see GradientDiagnostics).
//
// Checkpoints (nn/checkpoint.h) hold the learner's meta-parameters ("params"), its optimizer state
// ("optimizer"), the task generator's state and the step; resume_learner restores all four, so a
// resumed run continues bit-identically (same tasks, same updates) as long as the learner keeps no
// other state than those. A checkpoint is written every `checkpoint_every` steps, at the end, and when
// `interrupt` becomes true (then training stops and the outcome says interrupted).
//
// Checkpoint selection on the validation split (ValidationOptions; off when `every` is 0 or the
// family has no validation split): after every meta-step that is a multiple of `every`, and after the
// last step of the run, the learner is scored on the same `episodes` validation episodes (drawn once
// from Generator(seed), `shots` support rows per class) exactly as the benchmark scores a test
// episode: eval::make_learner_method with the learner's default inner steps, eval::score_episode,
// the family's primary metric (eval::primary_metric; lower_is_better gives the direction). Each
// evaluation is one JSONL line {"step", "split": "validation", "validation_metric",
// "validation_value", "best", "diverged", "seconds"} written after that step's metrics line; validation_value is
// null (and never best) when an adaptation produced a non-finite output (counted in "diverged").
// The candidates are the evaluations at multiples of `every` (the best so far, earliest on ties, is
// kept with its meta-parameters) and the evaluation of the last step; when training ends (not when
// interrupted) with select_best set the better of the two is restored into the learner, so the
// learner returned and the final checkpoint predict with it. The last step of a shorter run that a
// later run extends is no candidate any more, so training to N steps at once or in pieces selects
// the same step. Validation draws nothing from the training generator and records nothing on the
// tape: the training trajectory is the same with it on or off.
//
// Checkpoint layout with validation on: "params" holds what the model predicts with (the selected
// meta-parameters in the final checkpoint with select_best, the current ones otherwise);
// "validation.best" the best meta-parameters so far; "training.params" the last training state when
// it differs from "params" (continuing a finished run trains on from there); the config JSON gains
// "selection": {"split": "validation", "metric", "shots", "episodes", "seed", "every", "select_best",
// "best_step", "best_value", "last_step", "last_value", and, once training has ended,
// "selected_step" and "selected_validation_value"} (values null when not finite). Resuming restores
// the validation history from these, so a resumed run selects bit-identically.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "eval/episodes.h"
#include "eval/metrics.h"
#include "eval/progress.h"
#include "meta/learner.h"

namespace metatape::eval {

// Per-parameter gradient diagnostics. grad_norms: L2 norm of the first-order query-loss gradient at
// the adapted parameters (the FOMAML direction; for metric learners, the query loss of the predictions
// with respect to the embedding), averaged over the given tasks; update_norms: L2 norm of the change
// the last meta-step made to each meta-parameter, and update_ratio = update norm / parameter norm.
// A parameter is flagged "vanishing" when its gradient norm is below vanish_threshold (or its update
// ratio below 1e-9 while training), "exploding" when above explode_threshold or not finite.
struct GradientDiagnostics {
  std::map<std::string, double> grad_norms, update_norms, update_ratio;
  std::vector<std::string> vanishing, exploding;
};
GradientDiagnostics diagnose_gradients(meta::Learner& learner, const tasks::TaskBatch& batch,
                                       const nn::ParameterList* before_step = nullptr, double vanish_threshold = 1e-7,
                                       double explode_threshold = 1e3);

struct ValidationOptions {
  std::int64_t every = 0;   // meta-steps between validation evaluations; 0: no validation
  int episodes = 50;        // validation episodes, the same ones at every evaluation
  int shots = 5;            // support rows per class of a validation episode (the headline shots)
  std::uint64_t seed = 0;   // draws the episodes; episode e's adaptation gets derive_seed(seed, {e})
  bool select_best = true;  // restore the best evaluation's meta-parameters at the end
  TradingConfig trading;    // fees of the trading metrics (price direction)
};

// The validation history a run needs to go on selecting (saved in checkpoints, see above).
struct SelectionState {
  std::string metric;  // the family's primary metric
  // The validation settings the history was made with (ValidationOptions); resuming with other
  // episodes, shots or seed is refused (the values would not be comparable).
  std::int64_t every = 0;
  int episodes = 0, shots = 0;
  std::uint64_t seed = 0;
  bool select_best = true;
  std::int64_t best_step = 0;  // 0: no finite evaluation at a multiple of `every` yet
  double best_value = std::nan("");
  nn::ParameterList best;      // meta-parameters at best_step (no history)
  std::int64_t last_step = 0;  // the most recent evaluation
  double last_value = std::nan("");
  // Set when training ended: the step whose meta-parameters the learner holds and their value.
  std::int64_t selected_step = 0;
  double selected_value = std::nan("");
};

struct TrainOptions {
  std::int64_t meta_steps = 100;
  std::int64_t meta_batch = 8;
  std::string jsonl_path;             // empty: no per-step log
  std::string checkpoint_path;        // empty: no checkpoints
  std::int64_t checkpoint_every = 0;  // 0: only at the end and on interruption
  std::int64_t diagnose_every = 50;
  std::string config_json = "{}";  // stored in checkpoints
  const std::atomic<bool>* interrupt = nullptr;
  ProgressBar* progress = nullptr;  // updated with offset + steps done
  std::int64_t progress_offset = 0;
  ValidationOptions validation;
};

struct TrainOutcome {
  bool interrupted = false;
  std::int64_t steps_done = 0;  // learner.meta_steps() at the end
  double seconds = 0.0;
  double tasks_per_second = 0.0;
  meta::StepMetrics last;
  double adaptation_ms = 0.0;
  std::int64_t vanishing_flags = 0, exploding_flags = 0;
  // Validation (empty metric: no validation ran): the step whose meta-parameters the learner holds at
  // the end (the best evaluation's with select_best, else the last step's) and its validation value.
  std::string validation_metric;
  std::int64_t validations = 0;     // evaluations run by this call
  double validation_seconds = 0.0;  // their wall time (included in `seconds`)
  std::int64_t selected_step = 0;
  double selected_validation_value = std::nan("");
};

// `selection`: the validation history so far (filled by resume_learner when resuming; updated here).
// Without one a local state is used.
TrainOutcome train_learner(meta::Learner& learner, const FamilySource& family, Generator& gen,
                           const TrainOptions& options, SelectionState* selection = nullptr);

// The mean of the family's primary metric over `episodes` after adapting with the learner's default
// inner steps (the benchmark's scoring); NaN when an adaptation diverges (counted in `diverged`).
double validation_value(meta::Learner& learner, const FamilySource& family, const std::vector<Episode>& episodes,
                        std::uint64_t seed, const TradingConfig& trading, std::int64_t* diverged = nullptr);

// `selection` (when given) is written as described above; `training_params` is the training state when
// the learner's meta-parameters are not it (the selected ones at the end of training).
void save_learner_checkpoint(const std::string& path, meta::Learner& learner, const Generator& gen,
                             const std::string& config_json, const SelectionState* selection = nullptr,
                             const nn::ParameterList* training_params = nullptr);
// Restores meta-parameters, optimizer state, generator state and step count. Throws (naming the file
// and the difference) when the checkpoint does not fit the learner. Without `selection` the learner
// gets "params" (what the checkpoint predicts with: the selected meta-parameters of a finished run);
// with it, the learner gets the training state ("training.params" when present) and `selection` the
// validation history, to continue training.
void resume_learner(const std::string& path, meta::Learner& learner, Generator& gen,
                    SelectionState* selection = nullptr);
// The validation history recorded in a checkpoint's config JSON and sections (empty metric: none).
SelectionState checkpoint_selection(const std::string& path);

// Tidying before a resume from a checkpoint at `step`, so a run killed any number of times leaves the
// same files as one that never was:
// cut_log_to_step keeps the JSONL lines of steps 1..step, one per step and kind (the lines a killed run
// wrote after its last checkpoint are dropped, and so are repeats of steps written by earlier resumes
// and a half-written last line); returns the number of lines removed. No file: nothing to do.
std::size_t cut_log_to_step(const std::string& jsonl_path, std::int64_t step);
// Removes "<checkpoint>.tmp.<pid>" files (left by a writer killed mid-save, nn/checkpoint.h) whose pid
// is not a running process or is this process; returns how many were removed.
std::size_t remove_stale_checkpoint_temporaries(const std::string& checkpoint_path);

}  // namespace metatape::eval
