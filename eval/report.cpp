#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/scoring.h"
#include "kernels/error.h"

namespace metatape::eval {
namespace {

std::string num(double v, int digits = 4) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string pval(double p) {
  char buf[64];
  if (p < 1e-4)
    std::snprintf(buf, sizeof buf, "%.1e", p);
  else
    std::snprintf(buf, sizeof buf, "%.4f", p);
  return buf;
}

nlohmann::json finite(double v) {
  if (std::isfinite(v)) return v;
  return v > 0 ? "inf" : (v < 0 ? "-inf" : "nan");
}

template <class T>
int middle(const std::vector<T>& v) {
  return static_cast<int>(v[v.size() / 2]);
}

}  // namespace

nlohmann::json report_json(const BenchmarkResult& r) {
  const BenchmarkConfig& c = r.config;
  nlohmann::json j;
  j["data"] = r.data_description;
  j["seconds"] = r.seconds;
  j["interrupted"] = r.interrupted;
  j["config"] = {{"learners", c.learners},
                 {"shots", c.shots},
                 {"steps", c.steps},
                 {"runs", c.runs},
                 {"episodes", c.episodes},
                 {"seed", c.seed},
                 {"meta_steps", c.meta_steps},
                 {"meta_batch", c.meta_batch},
                 {"train_shots", c.train_shots},
                 {"hidden", c.hidden},
                 {"activation", c.activation},
                 {"outer_optimizer", c.outer_optimizer},
                 {"outer_lr", c.outer_lr},
                 {"clip_norm", c.clip_norm},
                 {"baseline_lr", c.baseline_lr},
                 {"inner_lr", c.learner_options.maml.inner_lr},
                 {"inner_steps", c.learner_options.maml.inner_steps},
                 {"fee_rate", c.trading.fee_rate},
                 {"slippage_rate", c.trading.slippage_rate},
                 {"bootstrap_resamples", c.bootstrap_resamples},
                 {"alpha", c.alpha},
                 {"headline_shots", headline_shots(c)},
                 {"selection_episodes", c.selection_episodes},
                 {"verdict_against", c.verdict_against}};
  j["families"] = r.families;
  j["methods"] = r.methods;
  j["baselines"] = r.baselines;
  j["primary_metric"] = r.primary;
  j["reference_strategy"] = r.reference;
  j["cells"] = nlohmann::json::array();
  for (const auto& cell : r.cells) {
    nlohmann::json m;
    for (const auto& [name, s] : cell.metrics) {
      m[name] = {{"n", s.n},           {"mean", s.mean},       {"std", s.std},
                 {"ci_low", s.ci_low}, {"ci_high", s.ci_high}, {"values", cell.values.at(name)}};
    }
    j["cells"].push_back({{"family", cell.family},
                          {"method", cell.method},
                          {"baseline", cell.baseline},
                          {"shots", cell.shots},
                          {"steps", cell.steps},
                          {"adapt_ms", cell.adapt_ms},
                          {"diverged", cell.diverged},
                          {"metrics", m},
                          {"pooled", cell.pooled}});
    if (!cell.calibration.empty()) {
      nlohmann::json bins = nlohmann::json::array();
      for (std::size_t b = 0; b < cell.calibration.size(); ++b) {
        const auto& x = cell.calibration[b];
        const double n = static_cast<double>(std::max<std::int64_t>(1, x.count));
        bins.push_back({{"bin_low", static_cast<double>(b) / static_cast<double>(cell.calibration.size())},
                        {"bin_high", static_cast<double>(b + 1) / static_cast<double>(cell.calibration.size())},
                        {"count", x.count},
                        {"mean_predicted", x.count ? x.predicted / n : 0.0},
                        {"observed", x.count ? x.outcomes / n : 0.0}});
      }
      j["cells"].back()["calibration"] = bins;
    }
  }
  j["comparisons"] = nlohmann::json::array();
  for (const auto& x : r.comparisons) {
    j["comparisons"].push_back({{"family", x.family},
                                {"learner", x.learner},
                                {"baseline", x.baseline},
                                {"metric", x.metric},
                                {"shots", x.shots},
                                {"steps", x.steps},
                                {"pairs", x.pairs},
                                {"mean_difference", x.mean_difference},
                                {"bootstrap_low", x.bootstrap.low},
                                {"bootstrap_high", x.bootstrap.high},
                                {"t", finite(x.t_test.statistic)},
                                {"p_t", x.t_test.p_value},
                                {"p_t_holm", x.p_t_holm},
                                {"wilcoxon", x.wilcoxon.statistic},
                                {"wilcoxon_method", x.wilcoxon.method},
                                {"p_wilcoxon", x.wilcoxon.p_value},
                                {"p_wilcoxon_holm", x.p_wilcoxon_holm},
                                {"cohens_d", finite(x.cohens_d)},
                                {"significant", x.significant},
                                {"learner_better", x.learner_better}});
  }
  j["verdicts"] = nlohmann::json::array();
  for (const auto& v : r.verdicts) {
    nlohmann::json val = nlohmann::json::object();
    for (const auto& [steps, mean] : v.validation_means) val[std::to_string(steps)] = mean;
    j["verdicts"].push_back({{"family", v.family},
                             {"learner", v.learner},
                             {"metric", v.metric},
                             {"strongest_baseline", v.strongest_baseline},
                             {"difference", v.difference},
                             {"ci_low", v.ci_low},
                             {"ci_high", v.ci_high},
                             {"p_holm", v.p_holm},
                             {"skill", v.skill},
                             {"verdict", v.verdict},
                             {"p", v.p},
                             {"shots", v.shots},
                             {"steps", v.steps},
                             {"steps_selected_on", v.steps_selected_on},
                             {"validation_means", val},
                             {"pairs", v.pairs},
                             {"learner_mean", v.learner_mean},
                             {"baseline_mean", v.baseline_mean}});
    if (v.has_finetune) {
      j["verdicts"].back()["versus_finetune"] = {{"difference", v.finetune_difference}, {"p_holm", v.finetune_p_holm}};
    }
  }
  j["episodes"] = nlohmann::json::array();
  for (const auto& e : r.episodes) {
    j["episodes"].push_back({{"family", e.family},
                             {"run", e.run},
                             {"shots", e.shots},
                             {"index", e.index},
                             {"series", e.symbols},
                             {"support_begin_ms", e.support_begin_ms},
                             {"support_end_ms", e.support_end_ms},
                             {"query_begin_ms", e.query_begin_ms},
                             {"query_end_ms", e.query_end_ms}});
  }
  j["training"] = nlohmann::json::array();
  for (const auto& t : r.training) {
    j["training"].push_back({{"family", t.family},
                             {"learner", t.learner},
                             {"run", t.run},
                             {"steps", t.steps},
                             {"seconds", t.seconds},
                             {"tasks_per_second", t.tasks_per_second},
                             {"final_query_loss", t.final_query_loss},
                             {"final_accuracy", t.final_accuracy},
                             {"adaptation_ms", t.adaptation_ms},
                             {"vanishing_flags", t.vanishing_flags},
                             {"exploding_flags", t.exploding_flags},
                             {"log", t.log_path},
                             {"validation_metric", t.validation_metric},
                             {"selected_step", t.selected_step},
                             {"selected_validation_value", std::isfinite(t.selected_validation_value)
                                                               ? nlohmann::json(t.selected_validation_value)
                                                               : nlohmann::json(nullptr)}});
  }
  j["walk_forward"] = walk_forward_json(r.walk_forward);
  return j;
}

std::string report_markdown(const BenchmarkResult& r) {
  const BenchmarkConfig& c = r.config;
  std::ostringstream md;
  md << "# metatape benchmark report\n\n";
  md << "Data: " << r.data_description << ". Learners meta-trained for " << c.meta_steps << " meta-steps (meta-batch "
     << c.meta_batch << ", " << c.train_shots << "-shot training tasks); " << c.runs << " run(s) x " << c.episodes
     << " test episodes per shots value, the same episodes for "
     << "every method. Intervals are 95% t intervals of the mean over episodes; p-values are paired "
     << "(t-test, Wilcoxon signed-rank) and Holm-corrected over all " << r.comparisons.size()
     << " comparisons of this report. Fees " << c.trading.fee_rate << " + slippage " << c.trading.slippage_rate
     << " per unit of turnover. Total time " << num(r.seconds, 1) << " s.";
  if (r.interrupted) md << " **Interrupted: partial results.**";
  md << "\n";
  md << verdicts_markdown(r);
  const int ref_shots = middle(c.shots), ref_steps = middle(c.steps);
  auto cell_of = [&](const std::string& f, int shots, int steps, const std::string& m) -> const CellResult* {
    for (const auto& cell : r.cells) {
      if (cell.family == f && cell.shots == shots && cell.steps == steps && cell.method == m) return &cell;
    }
    return nullptr;
  };
  std::vector<std::string> all_methods = r.methods;
  for (const auto& b : r.baselines) all_methods.push_back(b);
  for (const auto& fam : r.families) {
    const std::string metric = r.primary.at(fam);
    md << "\n## " << fam << "\n\n### " << metric << " (mean [95% CI]) by shots and adaptation steps\n\n";
    md << "| method |";
    for (int s : c.shots)
      for (int k : c.steps) md << " " << s << "-shot " << k << "-step |";
    md << "\n|---|";
    for (std::size_t i = 0; i < c.shots.size() * c.steps.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& m : all_methods) {
      if (cell_of(fam, ref_shots, ref_steps, m) == nullptr ||
          cell_of(fam, ref_shots, ref_steps, m)->metrics.count(metric) == 0)
        continue;
      const bool base = std::find(r.baselines.begin(), r.baselines.end(), m) != r.baselines.end();
      md << "| " << m << (base ? " (baseline)" : "") << " |";
      for (int s : c.shots) {
        for (int k : c.steps) {
          const CellResult* cell = cell_of(fam, s, k, m);
          if (cell == nullptr || cell->metrics.count(metric) == 0) {
            md << " - |";
            continue;
          }
          const Summary& x = cell->metrics.at(metric);
          md << " " << num(x.mean, 3) << " [" << num(x.ci_low, 3) << ", " << num(x.ci_high, 3) << "] |";
        }
      }
      md << "\n";
    }
    // Every metric at the reference cell.
    std::vector<std::string> metric_names;
    for (const auto& m : all_methods) {
      if (const CellResult* cell = cell_of(fam, ref_shots, ref_steps, m)) {
        for (const auto& [name, s] : cell->metrics) {
          if (std::find(metric_names.begin(), metric_names.end(), name) == metric_names.end())
            metric_names.push_back(name);
        }
      }
    }
    md << "\n### All metrics at " << ref_shots << "-shot, " << ref_steps
       << " steps (mean ± half-width of the 95% CI)\n\n| method |";
    for (const auto& name : metric_names) md << " " << name << " |";
    md << " adapt ms | diverged |\n|---|";
    for (std::size_t i = 0; i <= metric_names.size() + 1; ++i) md << "---|";
    md << "\n";
    for (const auto& m : all_methods) {
      const CellResult* cell = cell_of(fam, ref_shots, ref_steps, m);
      if (cell == nullptr) continue;
      md << "| " << m << " |";
      for (const auto& name : metric_names) {
        auto it = cell->metrics.find(name);
        if (it == cell->metrics.end()) {
          md << " - |";
          continue;
        }
        md << " " << num(it->second.mean, 3) << " ± " << num((it->second.ci_high - it->second.ci_low) / 2, 3) << " |";
      }
      md << " " << num(cell->adapt_ms, 2) << " | " << cell->diverged << " |\n";
    }
    std::string pooled, prevalence;
    for (const auto& m : all_methods) {
      const CellResult* cell = cell_of(fam, ref_shots, ref_steps, m);
      if (cell == nullptr || cell->pooled.count("pooled_pr_auc") == 0) continue;
      pooled += " " + m + " " + num(cell->pooled.at("pooled_pr_auc"), 3) + ";";
      prevalence = num(cell->pooled.at("pooled_prevalence"), 3);
    }
    if (!pooled.empty()) {
      md << "\nPR-AUC pooled over all test rows of the cell (not averaged over episodes):" << pooled
         << " no-skill line (the pooled prevalence) " << prevalence << ".\n";
    }
    md << "\n### Paired comparisons on " << metric << " at " << ref_shots << "-shot, " << ref_steps
       << " steps against every baseline (learner - baseline; descriptive: the verdict is against the "
          "strongest baseline only)\n\n"
       << "| learner | baseline | difference | bootstrap 95% CI | p (t, Holm) | p (Wilcoxon, Holm) | Cohen's d | "
          "verdict |\n"
       << "|---|---|---|---|---|---|---|---|\n";
    for (const auto& x : r.comparisons) {
      if (x.family != fam || x.shots != ref_shots || x.steps != ref_steps) continue;
      const char* verdict = !x.significant
                                ? "no significant difference"
                                : (x.learner_better ? "better than this baseline" : "worse than this baseline");
      md << "| " << x.learner << " | " << x.baseline << " | " << num(x.mean_difference) << " | ["
         << num(x.bootstrap.low) << ", " << num(x.bootstrap.high) << "] | " << pval(x.p_t_holm) << " | "
         << pval(x.p_wilcoxon_holm) << " | " << num(x.cohens_d, 3) << " | " << verdict << " |\n";
    }
    std::size_t sig = 0, total = 0, better = 0;
    for (const auto& x : r.comparisons) {
      if (x.family != fam) continue;
      ++total;
      if (x.significant) {
        ++sig;
        better += x.learner_better;
      }
    }
    std::int64_t div = 0;
    for (const auto& cell : r.cells)
      if (cell.family == fam) div += cell.diverged;
    if (div > 0) {
      md << "\n" << div << " adaptations diverged in this family (all cells; scored as zero-skill).\n";
    }
    md << "\nAcross all " << total << " " << fam << " comparisons (every shots and steps value): " << sig
       << " significant after Holm correction, " << better << " of them in the learner's favour.\n";
  }
  if (!r.walk_forward.empty())
    md << "\n## Walk-forward trading (test split, stitched)\n\n" << walk_forward_markdown(r.walk_forward);
  if (!r.training.empty()) {
    md << "\n## Meta-training\n\nThe selected step is the meta-step whose parameters were tested, chosen on the "
          "validation split (training.validate_every, training.select_best): its validation value of the "
          "primary metric is shown; - when no validation ran.\n\n"
          "| family | learner | run | steps | seconds | tasks/s | final query loss | final accuracy | adapt ms | "
          "vanishing / exploding flags | selected step | validation value |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& t : r.training) {
      md << "| " << t.family << " | " << t.learner << " | " << t.run << " | " << t.steps << " | " << num(t.seconds, 1)
         << " | " << num(t.tasks_per_second, 1) << " | " << num(t.final_query_loss) << " | "
         << (t.final_accuracy >= 0 ? num(t.final_accuracy, 3) : std::string("-")) << " | " << num(t.adaptation_ms, 2)
         << " | " << t.vanishing_flags << " / " << t.exploding_flags << " | "
         << (t.selected_step > 0 ? std::to_string(t.selected_step) : std::string("-")) << " | "
         << (t.validation_metric.empty() || !std::isfinite(t.selected_validation_value)
                 ? std::string("-")
                 : t.validation_metric + " " + num(t.selected_validation_value))
         << " |\n";
    }
  }
  return md.str();
}

std::string verdicts_markdown(const BenchmarkResult& r) {
  std::ostringstream md;
  md << "\n## Verdicts: each learner against the strongest baseline\n\n"
     << "A learner has skill on a family only when it beats the family's strongest simple baseline (the "
     << "best of the fitted baselines on the test mean) on the primary metric, a proper scoring rule, in a paired "
        "t-test "
     << "whose p-value is Holm-corrected with every other test of this report (alpha " << r.config.alpha
     << "). Headline cell: " << headline_shots(r.config) << "-shot; adaptation steps chosen per learner on "
     << r.config.selection_episodes << " validation-split episodes before the test split was scored.";
  if (!r.config.verdict_against.empty()) {
    md << " **Warning: the verdict rule was restricted to the baselines";
    for (const auto& b : r.config.verdict_against) md << " " << b;
    md << " (evaluation.verdict_against); these verdicts are not the honest ones.**";
  }
  md << "\n";
  for (const auto& fam : r.families) {
    std::vector<const Verdict*> vs;
    for (const auto& v : r.verdicts)
      if (v.family == fam) vs.push_back(&v);
    if (vs.empty()) continue;
    const bool lower = lower_is_better(vs.front()->metric);
    md << "\n### " << fam << " (" << vs.front()->metric << ", " << (lower ? "lower" : "higher")
       << " is better)\n\n| learner | steps | learner | strongest baseline | baseline | difference [95% CI] | p (Holm) "
          "| verdict | vs finetune (p Holm) |\n"
       << "|---|---|---|---|---|---|---|---|---|\n";
    int skilled = 0;
    for (const Verdict* v : vs) {
      skilled += v->skill;
      md << "| " << v->learner << " | " << v->steps << (v->steps_selected_on == "validation" ? " (val)" : "") << " | "
         << num(v->learner_mean) << " | " << v->strongest_baseline << " | " << num(v->baseline_mean) << " | "
         << num(v->difference) << " [" << num(v->ci_low) << ", " << num(v->ci_high) << "] | " << pval(v->p_holm)
         << " | **" << v->verdict << "** | "
         << (v->has_finetune ? num(v->finetune_difference) + " (" + pval(v->finetune_p_holm) + ")" : std::string("-"))
         << " |\n";
    }
    md << "\n"
       << (skilled == 0
               ? std::string("No learner has skill on ") + fam + "."
               : std::to_string(skilled) + " of " + std::to_string(vs.size()) + " learners have skill on " + fam + ".")
       << "\n";
  }
  return md.str();
}

std::string verdicts_csv(const BenchmarkResult& r) {
  std::ostringstream out;
  out.precision(10);
  out << "family,learner,metric,shots,steps,steps_selected_on,strongest_baseline,learner_mean,baseline_mean,"
         "difference,ci_low,ci_high,p,p_holm,skill,verdict\n";
  for (const auto& v : r.verdicts) {
    out << v.family << ',' << v.learner << ',' << v.metric << ',' << v.shots << ',' << v.steps << ','
        << v.steps_selected_on << ',' << v.strongest_baseline << ',' << v.learner_mean << ',' << v.baseline_mean << ','
        << v.difference << ',' << v.ci_low << ',' << v.ci_high << ',' << v.p << ',' << v.p_holm << ','
        << (v.skill ? 1 : 0) << ',' << v.verdict << '\n';
  }
  return out.str();
}

std::string cells_csv(const BenchmarkResult& r) {
  std::ostringstream out;
  out << "family,shots,steps,method,baseline,metric,n,mean,std,ci_low,ci_high,adapt_ms,diverged\n";
  out.precision(10);
  for (const auto& cell : r.cells) {
    for (const auto& [name, s] : cell.metrics) {
      out << cell.family << ',' << cell.shots << ',' << cell.steps << ',' << cell.method << ','
          << (cell.baseline ? 1 : 0) << ',' << name << ',' << s.n << ',' << s.mean << ',' << s.std << ',' << s.ci_low
          << ',' << s.ci_high << ',' << cell.adapt_ms << ',' << cell.diverged << '\n';
    }
  }
  return out.str();
}

std::string comparisons_csv(const BenchmarkResult& r) {
  std::ostringstream out;
  out.precision(10);
  out << "family,shots,steps,learner,baseline,metric,pairs,mean_difference,boot_low,boot_high,t,p_t,"
         "p_t_holm,wilcoxon,p_wilcoxon,p_wilcoxon_holm,cohens_d,significant,learner_better\n";
  for (const auto& x : r.comparisons) {
    out << x.family << ',' << x.shots << ',' << x.steps << ',' << x.learner << ',' << x.baseline << ',' << x.metric
        << ',' << x.pairs << ',' << x.mean_difference << ',' << x.bootstrap.low << ',' << x.bootstrap.high << ','
        << x.t_test.statistic << ',' << x.t_test.p_value << ',' << x.p_t_holm << ',' << x.wilcoxon.statistic << ','
        << x.wilcoxon.p_value << ',' << x.p_wilcoxon_holm << ',' << x.cohens_d << ',' << (x.significant ? 1 : 0) << ','
        << (x.learner_better ? 1 : 0) << '\n';
  }
  return out.str();
}

std::string training_csv(const BenchmarkResult& r) {
  std::ostringstream out;
  out.precision(10);
  out << "family,run,learner,steps,seconds,tasks_per_second,final_query_loss,final_accuracy,"
         "adaptation_ms,vanishing_flags,exploding_flags,log,validation_metric,selected_step,selected_validation_"
         "value\n";
  for (const auto& t : r.training) {
    out << t.family << ',' << t.run << ',' << t.learner << ',' << t.steps << ',' << t.seconds << ','
        << t.tasks_per_second << ',' << t.final_query_loss << ',' << t.final_accuracy << ',' << t.adaptation_ms << ','
        << t.vanishing_flags << ',' << t.exploding_flags << ',' << t.log_path << ',' << t.validation_metric << ','
        << t.selected_step << ',' << t.selected_validation_value << '\n';
  }
  return out.str();
}

void write_report(const BenchmarkResult& result, const std::string& directory) {
  std::filesystem::create_directories(directory);
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = (std::filesystem::path(directory) / name).string();
    std::ofstream out(path);
    if (!out) fail("report: cannot write " + path + " (check permissions and disk space)");
    out << text;
    if (!out) fail("report: writing " + path + " failed");
  };
  write("report.json", report_json(result).dump(1));
  write("report.md", report_markdown(result));
  write("cells.csv", cells_csv(result));
  write("comparisons.csv", comparisons_csv(result));
  write("verdicts.csv", verdicts_csv(result));
  write("training.csv", training_csv(result));
  write("equity.csv", walk_forward_equity_csv(result.walk_forward));
}

}  // namespace metatape::eval
