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
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "eval/episodes.h"
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
                                       const nn::ParameterList* before_step = nullptr,
                                       double vanish_threshold = 1e-7, double explode_threshold = 1e3);

struct TrainOptions {
  std::int64_t meta_steps = 100;
  std::int64_t meta_batch = 8;
  std::string jsonl_path;       // empty: no per-step log
  std::string checkpoint_path;  // empty: no checkpoints
  std::int64_t checkpoint_every = 0;  // 0: only at the end and on interruption
  std::int64_t diagnose_every = 50;
  std::string config_json = "{}";  // stored in checkpoints
  const std::atomic<bool>* interrupt = nullptr;
  ProgressBar* progress = nullptr;  // updated with offset + steps done
  std::int64_t progress_offset = 0;
};

struct TrainOutcome {
  bool interrupted = false;
  std::int64_t steps_done = 0;  // learner.meta_steps() at the end
  double seconds = 0.0;
  double tasks_per_second = 0.0;
  meta::StepMetrics last;
  double adaptation_ms = 0.0;
  std::int64_t vanishing_flags = 0, exploding_flags = 0;
};

TrainOutcome train_learner(meta::Learner& learner, const FamilySource& family, Generator& gen,
                           const TrainOptions& options);

void save_learner_checkpoint(const std::string& path, meta::Learner& learner, const Generator& gen,
                             const std::string& config_json);
// Restores meta-parameters, optimizer state, generator state and step count. Throws (naming the file
// and the difference) when the checkpoint does not fit the learner.
void resume_learner(const std::string& path, meta::Learner& learner, Generator& gen);

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
