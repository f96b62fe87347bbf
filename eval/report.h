// Benchmark reports: JSON (everything, per-episode values included), Markdown tables and CSV.
//
// Files written by write_report into a directory:
//   report.json       the complete result: config, cells (summaries and per-episode values),
//                     comparisons, training records
//   report.md         the tables printed by the CLI (see report_markdown)
//   cells.csv         family,shots,steps,method,baseline,metric,n,mean,std,ci_low,ci_high,adapt_ms,
//                     diverged
//   comparisons.csv   family,shots,steps,learner,baseline,metric,pairs,mean_difference,boot_low,
//                     boot_high,t,p_t,p_t_holm,wilcoxon,p_wilcoxon,p_wilcoxon_holm,cohens_d,
//                     significant,learner_better
//   equity.csv        family,method,asset,run,day,daily_return,equity,drawdown (walk-forward)
//   verdicts.csv      family,learner,metric,shots,steps,steps_selected_on,strongest_baseline,
//                     learner_mean,baseline_mean,difference,ci_low,ci_high,p,p_holm,skill,verdict
//   training.csv      family,run,learner,steps,seconds,tasks_per_second,final_query_loss,
//                     final_accuracy,adaptation_ms,vanishing_flags,exploding_flags,log
// scripts/plot_report.py turns report.json and the training logs into plots.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "eval/benchmark.h"

namespace metatape::eval {

nlohmann::json report_json(const BenchmarkResult& result);
// Markdown: per family, (1) the primary metric, mean and 95% interval, methods x (shots, steps);
// (2) every metric of every method at the reference cell (the middle shots and steps values);
// (3) the paired comparisons at the reference cell (difference, bootstrap interval, Holm-corrected
// p-values, effect size); then training times and gradient flags.
std::string report_markdown(const BenchmarkResult& result);
// The headline: per family, each learner against the strongest baseline (eval/benchmark.h, Verdict).
std::string verdicts_markdown(const BenchmarkResult& result);
std::string verdicts_csv(const BenchmarkResult& result);
std::string cells_csv(const BenchmarkResult& result);
std::string comparisons_csv(const BenchmarkResult& result);
std::string training_csv(const BenchmarkResult& result);

// Writes the five files above into `directory` (created if missing). Throws naming a file it cannot
// write.
void write_report(const BenchmarkResult& result, const std::string& directory);

}  // namespace metatape::eval
