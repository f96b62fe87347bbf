#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/random.h"
#include "eval/statistics.h"
#include "kernels/error.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

nlohmann::json load_reference() {
  const std::string path = std::string(METATAPE_SOURCE_DIR) + "/tests/data/stats/reference.json";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing " << path << " (run scripts/make_stats_fixtures.py)");
  return nlohmann::json::parse(in);
}

std::vector<double> vec(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

}  // namespace

TEST_CASE("special functions match scipy") {
  const auto ref = load_reference();
  int checked = 0;
  for (const auto& c : ref["special"]) {
    const std::string fn = c["fn"];
    const double expected = c["value"];
    double got = 0;
    if (fn == "betainc")
      got = regularized_incomplete_beta(c["a"], c["b"], c["x"]);
    else if (fn == "t_cdf")
      got = student_t_cdf(c["t"], c["df"]);
    else if (fn == "t_ppf")
      got = student_t_quantile(c["p"], c["df"]);
    else if (fn == "norm_ppf")
      got = normal_quantile(c["p"]);
    else
      FAIL("unknown fixture function " << fn);
    CHECK_MESSAGE(got == doctest::Approx(expected).epsilon(1e-9), fn << " " << c.dump());
    ++checked;
  }
  CHECK(checked >= 25);
  CHECK(normal_cdf(0.0) == 0.5);
  CHECK(student_t_cdf(std::numeric_limits<double>::infinity(), 3) == 1.0);
  CHECK_THROWS_WITH_AS(student_t_quantile(1.0, 3), doctest::Contains("p must lie in (0, 1)"), Error);
  CHECK_THROWS_AS(regularized_incomplete_beta(-1, 2, 0.5), Error);
}

TEST_CASE("summaries and t confidence intervals match scipy") {
  const auto ref = load_reference();
  for (const auto& c : ref["summaries"]) {
    const Summary s = summarize(vec(c["values"]));
    CHECK(s.mean == doctest::Approx(c["mean"].get<double>()).epsilon(1e-12));
    CHECK(s.std == doctest::Approx(c["std"].get<double>()).epsilon(1e-12));
    CHECK(s.ci_low == doctest::Approx(c["ci_low"].get<double>()).epsilon(1e-9));
    CHECK(s.ci_high == doctest::Approx(c["ci_high"].get<double>()).epsilon(1e-9));
  }
  const Summary one = summarize({3.0});
  CHECK(one.ci_low == 3.0);
  CHECK(one.ci_high == 3.0);
  CHECK_THROWS_WITH_AS(summarize({}), doctest::Contains("empty sample"), Error);
  CHECK_THROWS_WITH_AS(summarize({1.0, std::nan("")}), doctest::Contains("not finite"), Error);
}

TEST_CASE("paired t-test, Wilcoxon signed-rank and Cohen's d match scipy") {
  const auto ref = load_reference();
  int exact = 0, normal = 0;
  for (const auto& c : ref["paired"]) {
    INFO(c["name"].get<std::string>());
    const auto a = vec(c["a"]), b = vec(c["b"]);
    const TestResult t = paired_t_test(a, b);
    CHECK(t.statistic == doctest::Approx(c["t_statistic"].get<double>()).epsilon(1e-10));
    CHECK(t.p_value == doctest::Approx(c["t_p"].get<double>()).epsilon(1e-8));
    const TestResult w = wilcoxon_signed_rank(a, b);
    CHECK(std::string(w.method) == c["wilcoxon_method"].get<std::string>());
    CHECK(w.statistic == doctest::Approx(c["wilcoxon_statistic"].get<double>()).epsilon(1e-12));
    CHECK(w.p_value == doctest::Approx(c["wilcoxon_p"].get<double>()).epsilon(1e-8));
    (std::string(w.method) == "exact" ? exact : normal)++;
    CHECK(paired_cohens_d(a, b) == doctest::Approx(c["cohens_d"].get<double>()).epsilon(1e-12));
  }
  CHECK(exact >= 2);
  CHECK(normal >= 3);
}

TEST_CASE("degenerate paired inputs give documented limits, never NaN") {
  const std::vector<double> a{1, 2, 3}, same{1, 2, 3}, shifted{0, 1, 2};
  CHECK(paired_t_test(a, same).p_value == 1.0);
  CHECK(paired_t_test(a, same).statistic == 0.0);
  CHECK(paired_t_test(a, shifted).p_value == 0.0);
  CHECK(std::isinf(paired_t_test(a, shifted).statistic));
  CHECK(wilcoxon_signed_rank(a, same).p_value == 1.0);
  CHECK(paired_cohens_d(a, same) == 0.0);
  CHECK_THROWS_WITH_AS(paired_t_test(a, {1, 2}), doctest::Contains("differ in length"), Error);
  CHECK_THROWS_WITH_AS(paired_t_test({1}, {2}), doctest::Contains("at least 2 pairs"), Error);
}

TEST_CASE("Holm adjustment matches the reference and a hand-computed case") {
  const auto ref = load_reference();
  for (const auto& c : ref["holm"]) {
    const auto adjusted = holm_adjust(vec(c["p"]));
    const auto expected = vec(c["adjusted"]);
    REQUIRE(adjusted.size() == expected.size());
    for (std::size_t i = 0; i < adjusted.size(); ++i) CHECK(adjusted[i] == doctest::Approx(expected[i]));
  }
  // m = 3: sorted 0.01, 0.02, 0.04 -> 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04.
  const auto h = holm_adjust({0.04, 0.01, 0.02});
  CHECK(h[0] == doctest::Approx(0.04));
  CHECK(h[1] == doctest::Approx(0.03));
  CHECK(h[2] == doctest::Approx(0.04));
  CHECK(holm_adjust({}).empty());
  CHECK_THROWS_AS(holm_adjust({1.5}), Error);
}

TEST_CASE("bootstrap interval: seeded, contains the mean, close to the t interval") {
  Generator gen(11);
  std::vector<double> a(400), b(400), d(400);
  for (int i = 0; i < 400; ++i) {
    a[i] = 0.2 + gen.normal();
    b[i] = gen.normal();
    d[i] = a[i] - b[i];
  }
  const Interval x = bootstrap_mean_difference(a, b, 7);
  const Interval y = bootstrap_mean_difference(a, b, 7);
  CHECK(x.low == y.low);
  CHECK(x.high == y.high);
  CHECK(x.low < x.estimate);
  CHECK(x.estimate < x.high);
  const Summary s = summarize(d);
  CHECK(x.estimate == doctest::Approx(s.mean));
  // For 400 roughly normal differences the percentile interval is within ~10% of the t interval.
  CHECK(x.high - x.low == doctest::Approx(s.ci_high - s.ci_low).epsilon(0.1));
  const Interval z = bootstrap_mean_difference(a, b, 8);
  CHECK(z.low != x.low);
}

TEST_CASE("self-test: a learner predicting at random is not significantly better in >= 95% of runs") {
  // 400 repeated benchmark comparisons of 100 paired episodes: the baseline and the random learner
  // both score accuracy of random guesses on 15 three-way query rows. Each run's one-sided evidence
  // "random learner better" (t-test and Wilcoxon at 5%, half the two-sided p when the mean difference
  // is positive) must fail to reach significance in at least 95% of runs.
  Generator gen(2026);
  const int runs = 400, episodes = 100, rows = 15;
  int false_t = 0, false_w = 0, bootstrap_excludes_zero = 0;
  for (int r = 0; r < runs; ++r) {
    std::vector<double> learner(episodes), baseline(episodes);
    for (int e = 0; e < episodes; ++e) {
      int hits_l = 0, hits_b = 0;
      for (int i = 0; i < rows; ++i) {
        const auto label = gen.below(3);
        hits_l += gen.below(3) == label;
        hits_b += gen.below(3) == label;
      }
      learner[e] = hits_l / double(rows);
      baseline[e] = hits_b / double(rows);
    }
    const TestResult t = paired_t_test(learner, baseline);
    const TestResult w = wilcoxon_signed_rank(learner, baseline);
    const double diff = summarize(learner).mean - summarize(baseline).mean;
    false_t += diff > 0 && t.p_value / 2 < 0.05;
    false_w += diff > 0 && w.p_value / 2 < 0.05;
    if (r < 100) {
      const Interval ci = bootstrap_mean_difference(learner, baseline, 100 + r, 500);
      bootstrap_excludes_zero += ci.low > 0;
    }
  }
  CHECK(false_t <= runs * 5 / 100);
  CHECK(false_w <= runs * 5 / 100);
  CHECK(bootstrap_excludes_zero <= 5);
  // And a real effect is detected: the check above is not vacuous.
  std::vector<double> good(episodes), base(episodes);
  for (int e = 0; e < episodes; ++e) {
    good[e] = 0.6 + 0.1 * gen.normal();
    base[e] = 0.33 + 0.1 * gen.normal();
  }
  CHECK(paired_t_test(good, base).p_value < 1e-6);
  CHECK(wilcoxon_signed_rank(good, base).p_value < 1e-6);
}
