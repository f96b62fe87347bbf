// The family baselines (eval/baselines.h) against values computed by hand on small constructed
// series and tasks, and the causality guard: no baseline reads a bar after its decision row, and no
// fit reads a bar after the train split.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>

#include "eval/baselines.h"
#include "eval/scoring.h"
#include "kernels/error.h"
#include "tasks/families.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

constexpr std::int64_t kHour = 3'600'000, kDay = 86'400'000;

tasks::Series make_series(const std::string& symbol, const std::string& exchange, const std::vector<double>& close,
                          std::int64_t interval_ms, double fee = 0.001) {
  tasks::Series s;
  s.symbol = symbol;
  s.exchange = exchange;
  s.interval = interval_ms == kDay ? "1d" : "1h";
  s.interval_ms = interval_ms;
  s.fee_rate = fee;
  for (std::size_t i = 0; i < close.size(); ++i) {
    const double open = i == 0 ? close[0] : close[i - 1];
    s.push_back(1'600'000'000'000 + static_cast<std::int64_t>(i) * interval_ms, open, std::max(open, close[i]),
                std::min(open, close[i]), close[i], 1.0);
  }
  return s;
}

tasks::Market make_market(std::vector<tasks::Series> series) {
  tasks::Market m;
  m.time_ms = series.front().time_ms;
  m.series = std::move(series);
  return m;
}

// One feature (the 1-bar log return): warmup 2, so hand-made markets can be short.
tasks::FeatureConfig tiny_features() {
  tasks::FeatureConfig f;
  f.return_lags = {1};
  f.vol_windows = {};
  f.rsi_periods = {};
  f.macd = {};
  f.bollinger_windows = {};
  f.atr_periods = {};
  f.stochastic_periods = {};
  f.volume_z_windows = {};
  f.range_windows = {};
  f.skew_windows = {};
  f.kurtosis_windows = {};
  f.price_z_windows = {};
  f.sma_ratios = {};
  f.up_fraction_windows = {};
  return f;
}

FamilySource market_source(std::shared_ptr<const tasks::PreparedMarket> market, const std::string& family,
                           std::int64_t horizon, tasks::FamilyConfig fc = {}, double train_end = 0.6,
                           double validation_end = 0.8) {
  tasks::DistributionConfig c;
  c.families = {family};
  c.horizons = {horizon};
  c.family = std::move(fc);
  c.splits.train_end = train_end;
  c.splits.validation_end = validation_end;
  return make_market_sources(std::move(market), c, MarketSourceOptions{}).front();
}

tasks::Task labelled(std::vector<std::int64_t> support, std::vector<std::int64_t> query, std::int64_t classes) {
  tasks::Task t;
  t.kind = tasks::TaskKind::classification;
  t.num_classes = classes;
  t.support_x = Tensor::zeros(Shape{static_cast<std::int64_t>(support.size()), 1});
  t.query_x = Tensor::zeros(Shape{static_cast<std::int64_t>(query.size()), 1});
  t.support_y = Tensor::indices(support);
  t.query_y = Tensor::indices(query);
  return t;
}

// Cycles through `tasks`, one per requested task.
std::function<tasks::TaskBatch(std::int64_t, Generator&)> fixed_tasks(std::vector<tasks::Task> tasks) {
  auto next = std::make_shared<std::size_t>(0);
  return [tasks = std::move(tasks), next](std::int64_t n, Generator&) {
    tasks::TaskBatch out;
    for (std::int64_t i = 0; i < n; ++i) out.push_back(tasks[(*next)++ % tasks.size()]);
    return out;
  };
}

Method& find(std::vector<std::unique_ptr<Method>>& methods, const std::string& name) {
  for (auto& m : methods)
    if (m->name() == name) return *m;
  FAIL("no baseline named " << name);
  throw 0;
}

std::vector<std::string> names(const std::vector<std::unique_ptr<Method>>& methods) {
  std::vector<std::string> out;
  for (const auto& m : methods) out.push_back(m->name());
  return out;
}

std::vector<double> once(Method& m, const Episode& e) {
  Generator gen(0);
  const auto out = m.predict(e, {0, 3}, gen);
  REQUIRE(out.size() == 2);
  CHECK(out[0] == out[1]);  // baselines take no steps
  return out[0];
}

void check_probabilities(const std::vector<double>& logp, const std::vector<double>& expected) {
  REQUIRE(logp.size() % expected.size() == 0);
  for (std::size_t i = 0; i < logp.size(); ++i) {
    CHECK(std::isfinite(logp[i]));
    CHECK(std::exp(logp[i]) == doctest::Approx(expected[i % expected.size()]).epsilon(1e-12));
  }
}

}  // namespace

TEST_CASE("baselines: log-probabilities are floored at 1e-6, renormalised and finite") {
  const auto lp = log_probabilities({1.0, 0.0});
  CHECK(std::exp(lp[0]) == doctest::Approx(1.0 / (1.0 + 1e-6)).epsilon(1e-14));
  CHECK(std::exp(lp[1]) == doctest::Approx(1e-6 / (1.0 + 1e-6)).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(log_probabilities({-0.1, 1.1}), doctest::Contains("negative"), Error);
}

TEST_CASE("baselines: prior, majority and persistence against hand counts on hand-made tasks") {
  FamilySource f;
  f.name = "market_regime";
  f.kind = tasks::TaskKind::classification;
  f.num_classes = 3;
  f.outputs = 3;
  // Task A: support 0 0 1, query 1 1 2. Task B: support 2 1 2, query 2 0.
  f.train_batch = fixed_tasks({labelled({0, 0, 1}, {1, 1, 2}, 3), labelled({2, 1, 2}, {2, 0}, 3)});
  BaselineOptions o;
  o.fit_tasks = 2;
  auto methods = make_family_baselines(f, o);
  CHECK(names(methods) == std::vector<std::string>{"prior", "majority", "persistence"});
  for (const auto& m : methods) {
    CHECK(m->is_baseline());
    CHECK_FALSE(m->uses_steps());
  }
  Episode e;
  e.task = labelled({2, 2, 1, 0, 2, 1}, {0, 0, 0, 0}, 3);
  // prior: class counts over both tasks' support and query rows: 3, 4, 4 of 11; add-one: /14.
  check_probabilities(once(find(methods, "prior"), e), {4.0 / 14, 5.0 / 14, 5.0 / 14});
  // majority: the episode's support counts 1, 2, 3 of 6; add-one: /9. The argmax is the majority.
  const auto majority = once(find(methods, "majority"), e);
  check_probabilities(majority, {2.0 / 9, 3.0 / 9, 4.0 / 9});
  CHECK(argmax_rows(majority, 3) == std::vector<std::int64_t>{2, 2, 2, 2});
  // persistence: the last support label is 1; the pairs with last label 1 are A's (1->1, 1->1,
  // 1->2): counts 0, 2, 1 of 3; add-one: /6.
  check_probabilities(once(find(methods, "persistence"), e), {1.0 / 6, 3.0 / 6, 2.0 / 6});
  // Last label 2 (task B's pairs 2->2, 2->0): 2/5, 1/5, 2/5; last label 0 (no pair): uniform.
  e.task.support_y = Tensor::indices({1, 2});
  check_probabilities(once(find(methods, "persistence"), e), {2.0 / 5, 1.0 / 5, 2.0 / 5});
  e.task.support_y = Tensor::indices({0});
  check_probabilities(once(find(methods, "persistence"), e), {1.0 / 3, 1.0 / 3, 1.0 / 3});
}

TEST_CASE("baselines: threshold rule on a hand-made two-exchange series") {
  // Exchange a quotes 100 throughout, exchange b 100 * exp(-d(u)): the deviation log a - log b is
  // d(u) = 0.01 at bars 21, 22, 26 and 46, else 0. Fees 0.001 + 0.001, margin 0.0005: threshold
  // 0.0025, so the rule fires exactly at those bars; with horizon 1 the label of row t is d(t+1).
  const std::int64_t bars = 60;
  std::vector<double> a(bars, 100.0), b(bars, 100.0);
  for (std::int64_t u : {21, 22, 26, 46}) b[static_cast<std::size_t>(u)] = 100.0 * std::exp(-0.01);
  const auto market = tasks::PreparedMarket::make(
      make_market({make_series("X/USD", "a", a, kHour), make_series("X/USD", "b", b, kHour)}), tiny_features());
  CHECK(tasks::arbitrage_deviation(market->market, {0, 1}, 21) == doctest::Approx(0.01));
  CHECK(tasks::arbitrage_threshold(market->market, {0, 1}, 0.0005) == doctest::Approx(0.0025));
  FamilySource f = market_source(market, "arbitrage", 1);
  // One fit task: support rows 20..23, query rows 25..27 (embargo 1). (fires, label) per row:
  // 20 (0,1) 21 (1,1) 22 (1,0) 23 (0,0) | 25 (0,1) 26 (1,0) 27 (0,0).
  tasks::TaskRequest fit;
  fit.series = {0, 1};
  fit.begin = 20;
  fit.support_size = 4;
  fit.query_size = 3;
  fit.horizon = 1;
  const tasks::Task fit_task = f.family->make_task(*market, fit);
  REQUIRE(fit_task.support_y.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 1, 0, 0});
  REQUIRE(fit_task.query_y.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 0, 0});
  f.train_batch = fixed_tasks({fit_task});
  BaselineOptions o;
  o.fit_tasks = 1;
  auto methods = make_family_baselines(f, o);
  CHECK(names(methods) == std::vector<std::string>{"prior", "majority", "persistence", "threshold_rule"});
  // The episode: query rows 45, 46, 47; the rule fires at 46 only.
  tasks::TaskRequest test = fit;
  test.begin = 40;
  const Episode e = f.episode_at(test);
  REQUIRE(e.context.query_rows == std::vector<std::int64_t>{45, 46, 47});
  // Rule fires: label 1 in 1 of 3 rows -> (1 + 1) / (3 + 2) = 0.4. Quiet: 2 of 4 -> 3 / 6 = 0.5.
  const auto rule = once(find(methods, "threshold_rule"), e);
  REQUIRE(rule.size() == 6);
  const double expected[6] = {0.5, 0.5, 0.6, 0.4, 0.5, 0.5};
  for (int i = 0; i < 6; ++i)
    CHECK(std::exp(rule[static_cast<std::size_t>(i)]) == doctest::Approx(expected[i]).epsilon(1e-12));
  // prior: 3 positives of 7 -> 4 / 9; persistence: last support label 0, query 1, 0, 0 -> P(1) = 2 / 5.
  check_probabilities(once(find(methods, "prior"), e), {5.0 / 9, 4.0 / 9});
  check_probabilities(once(find(methods, "persistence"), e), {3.0 / 5, 2.0 / 5});
  // The scorer accepts the outputs as probabilities.
  CHECK(score_episode(f, e, rule).count("pr_auc") == 1);
}

TEST_CASE("baselines: EWMA volatility on a 6-bar series by hand") {
  const std::vector<double> close = {100, 102, 99, 101, 101, 104};
  // Window 5 (returns 1..5), seeded with the mean of r1^2 and r2^2, then r3, r4, r5 with lambda 0.94:
  // variance 6.055754014661888e-4 (numbers from an independent Python evaluation of the recursion).
  CHECK(ewma_log_volatility(close, 5, 0.94, 5, 2) == doctest::Approx(-3.704665737558399).epsilon(1e-13));
  CHECK(std::exp(2 * ewma_log_volatility(close, 5, 0.94, 5, 2)) ==
        doctest::Approx(6.055754014661888e-4).epsilon(1e-12));
  // Window 3 at t = 5: returns 3..5, seeded with r3, r4, then r5.
  CHECK(ewma_log_volatility(close, 5, 0.94, 3, 2) == doctest::Approx(-4.168650100823548).epsilon(1e-13));
  // t = 3: the window is clipped to returns 1..3.
  CHECK(ewma_log_volatility(close, 3, 0.94, 5, 2) == doctest::Approx(-3.6871440494329843).epsilon(1e-13));
  // A flat price: the variance floor gives log(1e-6), not -inf.
  CHECK(ewma_log_volatility({5, 5, 5}, 2, 0.94, 5, 1) == doctest::Approx(std::log(1e-6)));
  CHECK_THROWS_WITH_AS(ewma_log_volatility(close, 0, 0.94, 5, 2), doctest::Contains("needs 1 <= t"), Error);

  // Through the risk family's factory: the outputs at each query row are the EWMA at that bar.
  std::vector<double> longer;
  for (int i = 0; i < 80; ++i) longer.push_back(100.0 * std::exp(0.01 * std::sin(0.7 * i) + 0.002 * i));
  const auto market =
      tasks::PreparedMarket::make(make_market({make_series("X/USD", "a", longer, kHour)}), tiny_features());
  FamilySource f = market_source(market, "risk", 1, {}, 0.7, 0.85);
  BaselineOptions o;
  o.fit_tasks = 20;
  o.ewma_window = 5;
  o.ewma_seed_returns = 2;
  o.har_min_rows = 1;
  auto methods = make_family_baselines(f, o);
  CHECK(names(methods) == std::vector<std::string>{"support_mean", "ewma", "har_rv"});
  tasks::TaskRequest q;
  q.series = {0};
  q.begin = 40;
  q.support_size = 4;
  q.query_size = 3;
  q.horizon = 1;
  const Episode e = f.episode_at(q);
  const auto out = once(find(methods, "ewma"), e);
  REQUIRE(out.size() == 3);
  for (std::size_t j = 0; j < 3; ++j) CHECK(out[j] == ewma_log_volatility(longer, e.context.query_rows[j], 0.94, 5, 2));
  // support_mean: the mean of the support targets.
  const auto y = e.task.support_y.to_vector<double>();
  const double mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(y.size());
  for (double v : once(find(methods, "support_mean"), e)) CHECK(v == doctest::Approx(mean));
}

TEST_CASE("baselines: HAR-RV windows from the bar interval") {
  const HarWindows h = har_windows(kHour);
  CHECK((h.day == 24 && h.week == 168 && h.month == 720));
  const HarWindows m5 = har_windows(300'000);
  CHECK((m5.day == 288 && m5.week == 2016 && m5.month == 8640));
  const HarWindows d = har_windows(kDay);
  CHECK((d.day == 1 && d.week == 7 && d.month == 30));
  const HarWindows w = har_windows(7 * kDay);  // each window at least one bar longer than the last
  CHECK((w.day == 1 && w.week == 2 && w.month == 4));
  CHECK_THROWS_WITH_AS(har_windows(0), doctest::Contains("no bar interval"), Error);
  // Trailing volatility: returns log(2) and log(1/2) -> sqrt(mean r^2) = log 2; clipped to t returns.
  CHECK(trailing_log_volatility({1, 2, 1}, 2, 2) == doctest::Approx(std::log(std::log(2.0))));
  CHECK(trailing_log_volatility({1, 2, 1}, 2, 30) == doctest::Approx(std::log(std::log(2.0))));
}

TEST_CASE("baselines: HAR-RV recovers the coefficients of a series built so the regression is exact") {
  // Daily bars: windows 1, 7, 30; horizon 1, so the family's y at row t is log |r_{t+1}|. The first
  // 30 returns are arbitrary; every later return is set to exp(b0 + bd x_d + bw x_w + bm x_m) (sign
  // alternating) from the trailing log volatilities of the bars before it, so every full-window row
  // satisfies the HAR equation exactly.
  const double b0 = -1.2, bd = 0.35, bw = 0.25, bm = 0.15;
  const std::int64_t bars = 130;
  std::vector<double> close = {100.0};
  const HarWindows win = har_windows(kDay);
  for (std::int64_t k = 1; k < bars; ++k) {
    double r = 0.0;
    if (k <= 30) {
      r = std::exp(-4.8 + 1.5 * std::sin(1.3 * static_cast<double>(k)));
    } else {
      const std::int64_t t = k - 1;
      r = std::exp(b0 + bd * trailing_log_volatility(close, t, win.day) +
                   bw * trailing_log_volatility(close, t, win.week) +
                   bm * trailing_log_volatility(close, t, win.month));
    }
    close.push_back(close.back() * std::exp(k % 2 == 0 ? r : -r));
  }
  const auto market =
      tasks::PreparedMarket::make(make_market({make_series("X/USD", "a", close, kDay)}), tiny_features());
  const HarModel fit = fit_har(market->market, {0}, {2, 110}, 1, win, 20);
  CHECK_FALSE(fit.clipped);
  CHECK(fit.rows == 109 - 30);  // rows 30..108: full windows, label bar t + 1 <= 109
  CHECK(fit.intercept == doctest::Approx(b0).epsilon(1e-7));
  CHECK(fit.day == doctest::Approx(bd).epsilon(1e-7));
  CHECK(fit.week == doctest::Approx(bw).epsilon(1e-7));
  CHECK(fit.month == doctest::Approx(bm).epsilon(1e-7));

  // Through the factory (fitted on the source's train split [2, 110)): at the query rows the
  // prediction equals the family's own label y, since the series obeys the HAR equation.
  FamilySource f = market_source(market, "risk", 1, {}, 108.0 / 128.0, 115.0 / 128.0);
  REQUIRE(f.train_rows == std::pair<std::int64_t, std::int64_t>{2, 110});
  BaselineOptions o;
  o.fit_tasks = 20;
  o.har_min_rows = 20;
  auto methods = make_family_baselines(f, o);
  tasks::TaskRequest q;
  q.series = {0};
  q.begin = 112;
  q.support_size = 4;
  q.query_size = 5;
  q.horizon = 1;
  const Episode e = f.episode_at(q);
  const auto out = once(find(methods, "har_rv"), e);
  const auto y = e.task.query_y.to_vector<double>();  // f32 labels
  REQUIRE(out.size() == y.size());
  for (std::size_t j = 0; j < y.size(); ++j) {
    CHECK(out[j] == doctest::Approx(y[j]).epsilon(1e-6));
    CHECK(out[j] == doctest::Approx(fit.predict(close, e.context.query_rows[j])).epsilon(1e-9));
  }
}

TEST_CASE("baselines: HAR-RV on a short market clips its windows; constant regressors are dropped") {
  // Constant |r| = 0.01: every regressor is log 0.01, so the slopes are 0 and the intercept is y.
  std::vector<double> close = {100.0};
  for (int k = 1; k < 40; ++k) close.push_back(close.back() * std::exp(k % 2 ? 0.01 : -0.01));
  const auto market =
      tasks::PreparedMarket::make(make_market({make_series("X/USD", "a", close, kDay)}), tiny_features());
  const HarModel fit = fit_har(market->market, {0}, {2, 30}, 2, har_windows(kDay), 100);
  CHECK(fit.clipped);     // no row has a full 30-bar window before bar 30
  CHECK(fit.rows == 26);  // rows 2..27: the label window t+1..t+2 ends inside [2, 30)
  CHECK(fit.day == 0.0);
  CHECK(fit.week == 0.0);
  CHECK(fit.month == 0.0);
  CHECK(fit.intercept == doctest::Approx(std::log(0.01)));
  CHECK_THROWS_WITH_AS(fit_har(market->market, {0}, {2, 4}, 2, har_windows(kDay), 1),
                       doctest::Contains("no train row has a label inside"), Error);
}

TEST_CASE("baselines: long-only minimum variance against closed forms") {
  // Two assets: w1 = (s2^2 - s12) / (s1^2 + s2^2 - 2 s12).
  const auto w = long_only_min_variance({0.04, 0.006, 0.006, 0.09}, 2);
  CHECK(w[0] == doctest::Approx(0.084 / 0.118).epsilon(1e-12));
  CHECK(w[1] == doctest::Approx(0.034 / 0.118).epsilon(1e-12));
  // s12 > s1^2: the unconstrained answer shorts asset 2; long-only puts everything in asset 1.
  const auto corner = long_only_min_variance({0.01, 0.02, 0.02, 0.09}, 2);
  CHECK(corner[0] == doctest::Approx(1.0));
  CHECK(corner[1] == doctest::Approx(0.0).epsilon(1e-12));
  // Uncorrelated: weights proportional to 1 / variance.
  const auto diag = long_only_min_variance({1, 0, 0, 0, 2, 0, 0, 0, 4}, 3);
  CHECK(diag[0] == doctest::Approx(4.0 / 7));
  CHECK(diag[1] == doctest::Approx(2.0 / 7));
  CHECK(diag[2] == doctest::Approx(1.0 / 7));
  // Three assets where one is dropped: asset 3 = 1.5 x asset 1 + independent noise. On assets 1, 2
  // the optimum is (9/13, 4/13); there (cov w)_3 = 0.54/13 > 0.36/13 = (cov w)_1,2, so asset 3 stays
  // out (the unconstrained optimum would short it).
  const auto three = long_only_min_variance({0.04, 0.0, 0.06, 0.0, 0.09, 0.0, 0.06, 0.0, 0.10}, 3);
  CHECK(three[2] == 0.0);
  CHECK(three[0] == doctest::Approx(9.0 / 13).epsilon(1e-12));
  CHECK(three[1] == doctest::Approx(4.0 / 13).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(long_only_min_variance({1, 0, 0}, 2), doctest::Contains("is not 2 x 2"), Error);
}

TEST_CASE("baselines: min-variance weights from a hand-made 2-asset market, and equal weight") {
  // Rebalance every 2 bars; the three periods ending at bar 10 have simple returns (oldest first)
  // A: 0.02, -0.01, 0.01 and B: -0.03, 0.00, 0.03.
  std::vector<double> a(14, 100.0), b(14, 50.0);
  auto set_from = [](std::vector<double>& x, std::size_t bar, double value) {
    for (std::size_t i = bar; i < x.size(); ++i) x[i] = value;
  };
  set_from(a, 6, 100.0 * 1.02);
  set_from(a, 8, 100.0 * 1.02 * 0.99);
  set_from(a, 10, 100.0 * 1.02 * 0.99 * 1.01);
  set_from(b, 6, 50.0 * 0.97);
  set_from(b, 10, 50.0 * 0.97 * 1.03);
  const auto market = tasks::PreparedMarket::make(
      make_market({make_series("A/USD", "x", a, kHour), make_series("B/USD", "x", b, kHour)}), tiny_features());
  // Sample covariance (divisor 2): var A = 21/90000, var B = 0.0009, cov = -0.00015; shrinkage 0.5
  // halves the covariance.
  std::int64_t used = 0;
  const auto cov = trailing_period_covariance(market->market, {0, 1}, 10, 2, 3, 0.5, &used);
  CHECK(used == 3);
  REQUIRE(cov.size() == 4);
  CHECK(cov[0] == doctest::Approx(21.0 / 90000).epsilon(1e-10));
  CHECK(cov[3] == doctest::Approx(0.0009).epsilon(1e-10));
  CHECK(cov[1] == doctest::Approx(-0.000075).epsilon(1e-10));
  CHECK(cov[2] == cov[1]);
  // Fewer than two periods before the bar: no covariance.
  CHECK(trailing_period_covariance(market->market, {0, 1}, 3, 2, 3, 0.5, &used).empty());
  CHECK(used == 0);

  tasks::FamilyConfig fc;
  fc.portfolio_assets = 2;
  fc.rebalance = "2";
  FamilySource f = market_source(market, "portfolio", 2, fc);
  BaselineOptions o;
  o.min_variance_periods = 3;
  o.min_variance_shrinkage = 0.5;
  auto methods = make_family_baselines(f, o);
  CHECK(names(methods) == std::vector<std::string>{"equal_weight", "min_variance"});
  tasks::TaskRequest q;
  q.series = {0, 1};
  q.begin = 5;  // support rows 5, 7; the first query row 7 + 1 + 2 = 10
  q.support_size = 2;
  q.query_size = 1;
  const Episode e = f.episode_at(q);
  REQUIRE(e.context.query_rows == std::vector<std::int64_t>{10});
  const auto mv = once(find(methods, "min_variance"), e);
  const double wa = (0.0009 + 0.000075) / (21.0 / 90000 + 0.0009 + 0.00015);
  CHECK(std::exp(mv[0]) == doctest::Approx(wa).epsilon(1e-9));
  CHECK(std::exp(mv[1]) == doctest::Approx(1.0 - wa).epsilon(1e-9));
  const auto eq = once(find(methods, "equal_weight"), e);
  CHECK(eq == std::vector<double>{std::log(0.5), std::log(0.5)});
}

TEST_CASE("baselines: synthetic sources get the baselines that need no market; bad input is refused") {
  FamilySource reg;
  reg.name = "sinusoid";
  reg.kind = tasks::TaskKind::regression;
  reg.outputs = 1;
  CHECK(names(make_family_baselines(reg)) == std::vector<std::string>{"support_mean"});
  FamilySource pf;
  pf.name = "portfolio";
  pf.kind = tasks::TaskKind::portfolio;
  pf.outputs = 3;
  CHECK(names(make_family_baselines(pf)) == std::vector<std::string>{"equal_weight"});
  FamilySource cls;
  cls.name = "gaussian";
  cls.kind = tasks::TaskKind::classification;
  cls.num_classes = 2;
  cls.outputs = 2;
  CHECK_THROWS_WITH_AS(make_family_baselines(cls), doctest::Contains("no train_batch"), Error);
  cls.train_batch = fixed_tasks({labelled({0, 1}, {1}, 2)});
  BaselineOptions bad;
  bad.ewma_lambda = 1.0;
  CHECK_THROWS_WITH_AS(make_family_baselines(cls, bad), doctest::Contains("ewma_lambda must lie in (0, 1)"), Error);
  bad = {};
  bad.fit_tasks = 0;
  CHECK_THROWS_WITH_AS(make_family_baselines(cls, bad), doctest::Contains("fit_tasks must be >= 1"), Error);
  // A fit task labelled outside the family's classes.
  cls.train_batch = fixed_tasks({labelled({0, 2}, {1}, 3)});
  CHECK_THROWS_WITH_AS(make_family_baselines(cls), doctest::Contains("label 2 outside [0, 2)"), Error);
}

namespace {

std::shared_ptr<const tasks::PreparedMarket> simulated(std::int64_t bars) {
  tasks::SimulatorConfig c;
  c.bars = bars;
  c.assets = 3;
  c.exchanges = 2;
  c.seed = 5;
  c.cross_pairs = true;
  return tasks::PreparedMarket::make(tasks::simulate_market(c).market);
}

// The market with every bar after `after` scaled by a factor that differs per series and per bar, so
// every price, ratio and return after that bar changes. The features are kept (baselines do not read
// them; recomputing them would only make the test slow).
std::shared_ptr<const tasks::PreparedMarket> changed_after(const tasks::PreparedMarket& m, std::int64_t after) {
  auto out = std::make_shared<tasks::PreparedMarket>(m);
  tasks::Market& changed = out->market;
  for (std::size_t k = 0; k < changed.series.size(); ++k) {
    tasks::Series& s = changed.series[k];
    for (std::int64_t u = after + 1; u < s.size(); ++u) {
      const double f = (2.0 + static_cast<double>(k)) * (1.0 + 0.05 * static_cast<double>(u - after));
      const auto i = static_cast<std::size_t>(u);
      s.open[i] *= f;
      s.high[i] *= f;
      s.low[i] *= f;
      s.close[i] *= f;
    }
  }
  return out;
}

tasks::FamilyConfig four_bar_portfolio() {
  tasks::FamilyConfig fc;
  fc.rebalance = "4";
  return fc;
}

}  // namespace

TEST_CASE("baselines: no baseline reads a bar after its decision row, no fit a bar after the train split") {
  const auto market = simulated(1400);
  BaselineOptions o;
  o.fit_tasks = 120;
  o.har_min_rows = 50;
  o.min_variance_periods = 10;
  for (const std::string family : {"arbitrage", "triangular_arbitrage", "risk", "portfolio"}) {
    CAPTURE(family);
    const tasks::FamilyConfig fc = family == "portfolio" ? four_bar_portfolio() : tasks::FamilyConfig{};
    const FamilySource f = market_source(market, family, 4, fc);
    auto methods = make_family_baselines(f, o);
    Generator gen(3);
    const Episode e = f.test_episode(5, gen);
    const std::size_t rows = e.context.query_rows.size(), width = static_cast<std::size_t>(f.outputs);
    std::vector<std::vector<double>> before;
    for (auto& m : methods) {
      before.push_back(once(*m, e));
      REQUIRE(before.back().size() == rows * width);
      // The scorer takes every baseline's outputs.
      CHECK_NOTHROW(score_episode(f, e, before.back()));
    }
    // Change every bar after query row j: row j's outputs stay, for rows first, middle, last.
    for (std::size_t j : {std::size_t{0}, rows / 2, rows - 1}) {
      CAPTURE(j);
      const auto later = changed_after(*market, e.context.query_rows[j]);
      const FamilySource g = market_source(later, family, 4, fc);
      const Episode e2 = g.episode_at(e.context.request);
      for (std::size_t k = 0; k < methods.size(); ++k) {
        CAPTURE(methods[k]->name());
        const auto after = once(*methods[k], e2);
        for (std::size_t c = 0; c < width; ++c) CHECK(after[j * width + c] == before[k][j * width + c]);
      }
      // The change is seen by the rows after j (the guard would detect a reader of later bars).
      if (j + 1 < rows && family != "portfolio") {
        CHECK(once(*methods.back(), e2) != before.back());
      }
    }
    // Baselines fitted on a market changed after the train split predict the same on the episode.
    const auto after_train = changed_after(*market, f.train_rows.second - 1);
    auto refit = make_family_baselines(market_source(after_train, family, 4, fc), o);
    REQUIRE(refit.size() == methods.size());
    for (std::size_t k = 0; k < refit.size(); ++k) {
      CAPTURE(refit[k]->name());
      CHECK(once(*refit[k], e) == before[k]);
    }
  }
}

TEST_CASE("baselines: every family's baselines follow the output conventions on simulated data") {
  const auto market = simulated(1400);
  BaselineOptions o;
  o.fit_tasks = 100;
  o.har_min_rows = 50;
  for (const std::string& family : tasks::family_names()) {
    CAPTURE(family);
    const tasks::FamilyConfig fc = family == "portfolio" ? four_bar_portfolio() : tasks::FamilyConfig{};
    const FamilySource f = market_source(market, family, 4, fc);
    auto methods = make_family_baselines(f, o);
    Generator gen(11);
    const Episode e = f.test_episode(3, gen);
    const auto width = static_cast<std::size_t>(f.outputs);
    for (auto& m : methods) {
      CAPTURE(m->name());
      const auto out = once(*m, e);
      REQUIRE(out.size() == e.context.query_rows.size() * width);
      for (double v : out) REQUIRE(std::isfinite(v));
      for (std::size_t r = 0; r < out.size() / width; ++r) {
        double total = 0.0;
        for (std::size_t c = 0; c < width; ++c) total += std::exp(out[r * width + c]);
        if (f.kind == tasks::TaskKind::classification) {
          CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
          for (std::size_t c = 0; c < width; ++c) CHECK(out[r * width + c] >= std::log(1e-6) - 1e-9);
        } else if (f.kind == tasks::TaskKind::portfolio) {
          CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
        }
      }
      if (f.kind == tasks::TaskKind::regression && m->name() != "support_mean") {
        // Log volatility per bar: the same order of magnitude as the realised targets.
        const auto y = e.task.query_y.to_vector<double>();
        const double mean_y = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(y.size());
        const double mean_out = std::accumulate(out.begin(), out.end(), 0.0) / static_cast<double>(out.size());
        CHECK(std::fabs(mean_out - mean_y) < 1.5);
      }
    }
  }
}

TEST_CASE("baselines: market baselines refuse episodes without a market context") {
  const auto market = simulated(900);
  BaselineOptions o;
  o.fit_tasks = 20;
  o.har_min_rows = 10;
  auto methods = make_family_baselines(market_source(market, "risk", 4), o);
  Episode e;
  e.task.support_y = Tensor::from_vector(std::vector<double>{-5.0, -4.0}, Shape{2, 1});
  e.task.query_x = Tensor::zeros(Shape{2, 3});
  Generator gen(0);
  CHECK(methods[0]->predict(e, {1}, gen)[0] == std::vector<double>{-4.5, -4.5});
  CHECK_THROWS_WITH_AS(methods[1]->predict(e, {1}, gen), doctest::Contains("no market context"), Error);
  CHECK_THROWS_WITH_AS(methods[2]->predict(e, {1}, gen), doctest::Contains("no market context"), Error);
}
