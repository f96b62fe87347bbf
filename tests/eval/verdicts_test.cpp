// Verdicts and proper scoring rules: hand-computed values, and the rule's choices on constructed
// results where the right answer is known.
#include <doctest/doctest.h>

#include <cmath>

#include "eval/benchmark.h"
#include "eval/metrics.h"
#include "eval/report.h"
#include "eval/scoring.h"

using namespace metatape;
using namespace metatape::eval;

TEST_CASE("probabilistic metrics: log loss and Brier by hand") {
  // Two rows, three classes. Row 0 truth 0 with p = (0.5, 0.3, 0.2); row 1 truth 2 with p = (0.1, 0.1, 0.8).
  const std::vector<std::int64_t> truth = {0, 2};
  const std::vector<double> p = {0.5, 0.3, 0.2, 0.1, 0.1, 0.8};
  const ProbabilisticMetrics m = probabilistic_metrics(truth, p, 3);
  CHECK(m.log_loss == doctest::Approx(-(std::log(0.5) + std::log(0.8)) / 2).epsilon(1e-14));
  // Row 0: 0.25 + 0.09 + 0.04 = 0.38; row 1: 0.01 + 0.01 + 0.04 = 0.06.
  CHECK(m.brier == doctest::Approx((0.38 + 0.06) / 2).epsilon(1e-14));
  // A probability of zero on the truth costs -log(floor), not infinity.
  const ProbabilisticMetrics z = probabilistic_metrics({1}, {1.0, 0.0}, 2);
  CHECK(z.log_loss == doctest::Approx(-std::log(kProbabilityFloor)));
  CHECK(z.brier == doctest::Approx(2.0));
  CHECK_THROWS(probabilistic_metrics({3}, {0.5, 0.5}, 2));
  CHECK_THROWS(probabilistic_metrics({0}, {0.5, 0.5, 0.0}, 2));
  CHECK_THROWS(probabilistic_metrics({0}, {-0.1, 1.1}, 2));
}

TEST_CASE("probabilistic metrics: the true class frequencies beat every other constant predictor") {
  // 6 rows: labels 0,0,0,1,1,2 -> frequencies (1/2, 1/3, 1/6).
  const std::vector<std::int64_t> truth = {0, 0, 0, 1, 1, 2};
  auto constant = [&](double a, double b, double c) {
    std::vector<double> p;
    for (std::size_t i = 0; i < truth.size(); ++i) p.insert(p.end(), {a, b, c});
    return probabilistic_metrics(truth, p, 3);
  };
  const ProbabilisticMetrics prior = constant(0.5, 1.0 / 3, 1.0 / 6);
  for (const auto& q :
       std::vector<std::array<double, 3>>{{0.6, 0.3, 0.1}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, {0.98, 0.01, 0.01}}) {
    const ProbabilisticMetrics other = constant(q[0], q[1], q[2]);
    CHECK(prior.log_loss < other.log_loss);
    CHECK(prior.brier < other.brier);
  }
}

TEST_CASE("scoring: classification families are judged by log loss, risk by QLIKE") {
  FamilySource f;
  f.name = "price_direction";
  f.kind = tasks::TaskKind::classification;
  CHECK(primary_metric(f) == "log_loss");
  f.name = "arbitrage";
  CHECK(primary_metric(f) == "log_loss");
  f.name = "risk";
  f.kind = tasks::TaskKind::regression;
  CHECK(primary_metric(f) == "qlike");
  CHECK(lower_is_better("log_loss"));
  CHECK(lower_is_better("brier"));
  CHECK(lower_is_better("qlike"));
}

namespace {

// A result with one family, one learner, baselines "prior" (strong), "majority" (weak) and finetune,
// at 5-shot 1 step; per-episode log losses given directly.
BenchmarkResult constructed(const std::vector<double>& learner, const std::vector<double>& prior,
                            const std::vector<double>& majority) {
  BenchmarkResult r;
  r.config.learners = {"maml"};
  r.config.shots = {5};
  r.config.steps = {1};
  r.config.alpha = 0.05;
  r.config.bootstrap_resamples = 500;
  r.families = {"price_direction"};
  r.primary["price_direction"] = "log_loss";
  r.baselines = {"prior", "majority", "finetune"};
  r.simple_baselines = {"prior", "majority"};
  auto cell = [&](const std::string& method, bool baseline, const std::vector<double>& v) {
    CellResult c;
    c.family = "price_direction";
    c.method = method;
    c.baseline = baseline;
    c.shots = 5;
    c.steps = 1;
    c.values["log_loss"] = v;
    c.metrics["log_loss"] = summarize(v);
    r.cells.push_back(c);
  };
  cell("maml", false, learner);
  cell("prior", true, prior);
  cell("majority", true, majority);
  std::vector<double> finetune(learner.size());
  for (std::size_t i = 0; i < learner.size(); ++i) finetune[i] = learner[i] - 0.001 * static_cast<double>(i % 3);
  cell("finetune", true, finetune);
  for (const char* base : {"prior", "majority", "finetune"}) {
    Comparison c;
    c.family = "price_direction";
    c.learner = "maml";
    c.baseline = base;
    c.metric = "log_loss";
    c.shots = 5;
    c.steps = 1;
    const auto& x = r.cells[0].values.at("log_loss");
    const CellResult* b = nullptr;
    for (const auto& cc : r.cells)
      if (cc.method == base) b = &cc;
    const auto& y = b->values.at("log_loss");
    c.pairs = x.size();
    c.t_test = paired_t_test(x, y);
    c.bootstrap = bootstrap_mean_difference(x, y, 7, 500);
    c.mean_difference = c.bootstrap.estimate;
    c.learner_better = c.mean_difference < 0;
    r.comparisons.push_back(c);
  }
  correct_comparisons(r.comparisons, r.config.alpha);
  return r;
}

std::vector<double> series(double base, double step, int n, double wiggle) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(base + step * i / n + wiggle * ((i * 7919) % 13 - 6) / 6.0);
  return v;
}

const Verdict& only(const BenchmarkResult& r) {
  REQUIRE(r.verdicts.size() == 1);
  return r.verdicts.front();
}

}  // namespace

TEST_CASE("verdicts: the learner must beat the strongest simple baseline, not the weakest") {
  // The learner beats majority clearly but loses to the prior: no skill, and the rule names prior.
  const auto learner = series(1.05, 0.0, 200, 0.02);
  const auto prior = series(1.00, 0.0, 200, 0.02);
  const auto majority = series(1.30, 0.0, 200, 0.02);
  BenchmarkResult r = constructed(learner, prior, majority);
  compute_verdicts(r, {{{"price_direction", "maml"}, HeadlineChoice{1, "validation", {{1, 1.0}}}}});
  const Verdict& v = only(r);
  CHECK(v.strongest_baseline == "prior");
  CHECK(v.metric == "log_loss");
  CHECK_FALSE(v.skill);
  CHECK(v.verdict == "worse");
  CHECK(v.difference == doctest::Approx(0.05).epsilon(1e-9));
  CHECK(v.ci_low > 0.0);
  CHECK(v.has_finetune);
  CHECK(v.steps_selected_on == "validation");

  // The deliberately broken rule (compare with majority only) would call the same learner skilled.
  r.config.verdict_against = {"majority"};
  compute_verdicts(r, {{{"price_direction", "maml"}, HeadlineChoice{1}}});
  CHECK(only(r).strongest_baseline == "majority");
  CHECK(only(r).skill);
}

TEST_CASE("verdicts: skill needs significance after Holm; a tie is no skill") {
  const auto prior = series(1.00, 0.0, 200, 0.05);
  BenchmarkResult better = constructed(series(0.95, 0.0, 200, 0.05), prior, series(1.3, 0.0, 200, 0.05));
  compute_verdicts(better, {{{"price_direction", "maml"}, HeadlineChoice{1}}});
  CHECK(only(better).skill);
  CHECK(only(better).verdict == "skill");
  CHECK(only(better).p_holm < 0.05);
  CHECK(only(better).p_holm >= only(better).p);

  // Same mean as the prior up to noise: no skill.
  std::vector<double> noisy = prior;
  for (std::size_t i = 0; i < noisy.size(); ++i) noisy[i] += (i % 2 == 0 ? 0.01 : -0.01);
  BenchmarkResult tie = constructed(noisy, prior, series(1.3, 0.0, 200, 0.05));
  compute_verdicts(tie, {{{"price_direction", "maml"}, HeadlineChoice{1}}});
  CHECK_FALSE(only(tie).skill);
  CHECK(only(tie).verdict == "no skill");

  // The report's headline says so and report.json carries the list.
  const std::string md = verdicts_markdown(tie);
  CHECK(md.find("No learner has skill on price_direction") != std::string::npos);
  const auto j = report_json(better);
  REQUIRE(j["verdicts"].size() == 1);
  for (const char* key :
       {"family", "learner", "metric", "strongest_baseline", "difference", "ci_low", "ci_high", "p_holm", "skill"}) {
    CHECK(j["verdicts"][0].contains(key));
  }
  CHECK(j["verdicts"][0]["skill"].get<bool>());
}
