// Walk-forward trading on constructed markets whose answer is known: a perfect-foresight predictor
// earns the closed-form return after fees, a flat predictor earns exactly zero, buy-and-hold earns
// the price ratio, the walk never lets a method see bars after the decision bar, and every decision
// row lies in the test split.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "eval/benchmark.h"
#include "eval/episodes.h"
#include "eval/methods.h"
#include "eval/report.h"
#include "eval/walk_forward.h"
#include "kernels/error.h"
#include "nn/mlp.h"
#include "tasks/families.h"
#include "tasks/sampler.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

constexpr std::int64_t kStartMs = 1767225600000;  // 2026-01-01 00:00 UTC
constexpr std::int64_t kHourMs = 3'600'000;

// Closes alternate x (1 + a), x (1 - a): every bar's simple return has magnitude a.
tasks::Series alternating(const std::string& symbol, double a, std::int64_t bars) {
  tasks::Series s;
  s.symbol = symbol;
  s.exchange = "sim";
  s.interval = "1h";
  s.interval_ms = kHourMs;
  double close = 100.0;
  for (std::int64_t t = 0; t < bars; ++t) {
    const double open = close;
    close = t % 2 == 0 ? close * (1.0 + a) : close * (1.0 - a);
    s.push_back(kStartMs + t * kHourMs, open, std::max(open, close) * 1.001, std::min(open, close) * 0.999, close,
                1000.0 + static_cast<double>(t % 7));
  }
  return s;
}

tasks::Series random_walk(const std::string& symbol, std::int64_t bars, std::uint64_t seed) {
  tasks::Series s;
  s.symbol = symbol;
  s.exchange = "sim";
  s.interval = "1h";
  s.interval_ms = kHourMs;
  Generator gen(seed);
  double close = 50.0;
  for (std::int64_t t = 0; t < bars; ++t) {
    const double open = close;
    close *= std::exp(0.0002 + 0.01 * gen.normal());
    s.push_back(kStartMs + t * kHourMs, open, std::max(open, close) * 1.002, std::min(open, close) * 0.998, close,
                500.0 + 10.0 * gen.uniform());
  }
  return s;
}

FamilySource source(tasks::Market market, const std::string& family, std::int64_t stride = 1, std::int64_t horizon = 4,
                    std::vector<std::string> symbols = {}) {
  tasks::DistributionConfig c;
  c.families = {family};
  c.symbols = std::move(symbols);
  c.horizons = {horizon};
  c.stride = stride;
  c.splits.train_end = 0.5;
  c.splits.validation_end = 0.7;
  auto prepared = tasks::PreparedMarket::make(std::move(market));
  MarketSourceOptions options;
  options.train_shots = 2;
  options.query_size = 5;
  return make_market_sources(prepared, c, options).front();
}

tasks::Market two_alternating(std::int64_t bars = 800) {
  return tasks::align({alternating("AAA/USDT", 0.02, bars), alternating("BBB/USDT", 0.01, bars)});
}

WalkForwardConfig wf_config(double fee = 0.001, double slippage = 0.0005) {
  WalkForwardConfig c;
  c.shots = 2;
  c.steps = 1;
  c.readapt_every = 24;
  c.resamples = 200;
  c.trading.fee_rate = fee;
  c.trading.slippage_rate = slippage;
  return c;
}

// Cheats on purpose: reads the next bar's return from the market and puts all probability on the
// class that profits from it (log-probabilities 0 and -1e9).
class PerfectForesight final : public Method {
 public:
  std::string name() const override { return "oracle"; }
  bool is_baseline() const override { return true; }
  bool uses_steps() const override { return false; }
  std::vector<std::vector<double>> predict(const Episode& e, const std::vector<int>& steps, Generator&) override {
    const auto& close = e.context.market->market.series.at(static_cast<std::size_t>(e.context.request.series[0])).close;
    std::vector<double> out;
    for (std::int64_t q : e.context.query_rows) {
      const double r = close[static_cast<std::size_t>(q + 1)] / close[static_cast<std::size_t>(q)] - 1.0;
      const int cls = r > 0 ? 2 : (r < 0 ? 0 : 1);
      for (int k = 0; k < 3; ++k) out.push_back(k == cls ? 0.0 : -1e9);
    }
    return std::vector<std::vector<double>>(steps.size(), out);
  }
};

// The same raw outputs for every query row.
class Constant final : public Method {
 public:
  explicit Constant(std::vector<double> row) : row_(std::move(row)) {}
  std::string name() const override { return "constant"; }
  bool is_baseline() const override { return true; }
  bool uses_steps() const override { return false; }
  std::vector<std::vector<double>> predict(const Episode& e, const std::vector<int>& steps, Generator&) override {
    std::vector<double> out;
    for (std::size_t j = 0; j < e.context.query_rows.size(); ++j) out.insert(out.end(), row_.begin(), row_.end());
    return std::vector<std::vector<double>>(steps.size(), out);
  }

 private:
  std::vector<double> row_;
};

// An honest row-wise predictor that depends on everything the episode offers (support features and
// labels, query features, and the query labels if the walk leaked them); records every episode.
class Recording final : public Method {
 public:
  std::string name() const override { return "recording"; }
  bool is_baseline() const override { return false; }
  bool uses_steps() const override { return true; }
  std::vector<std::vector<double>> predict(const Episode& e, const std::vector<int>& steps, Generator&) override {
    contexts.push_back(e.context);
    query_labels.push_back(e.task.query_y.to_vector<std::int64_t>());
    returns_seen += e.query_returns.size();
    const auto sx = e.task.support_x.to_vector<double>();
    const auto sy = e.task.support_y.to_vector<std::int64_t>();
    const auto qx = e.task.query_x.to_vector<double>();
    const auto qy = e.task.query_y.to_vector<std::int64_t>();
    const std::int64_t dim = e.task.query_x.dim(1);
    double label_mean = 0.0, support_first = 0.0;
    for (std::int64_t y : sy) label_mean += static_cast<double>(y) / static_cast<double>(sy.size());
    for (std::size_t i = 0; i < sy.size(); ++i) support_first += sx[i * static_cast<std::size_t>(dim)];
    std::vector<double> out;
    for (std::size_t j = 0; j < e.context.query_rows.size(); ++j) {
      double x = 0.3 * (label_mean - 1.0) + 0.01 * support_first + static_cast<double>(qy[j]);
      for (std::int64_t f = 0; f < dim; ++f)
        x += 0.05 * qx[j * static_cast<std::size_t>(dim) + static_cast<std::size_t>(f)];
      out.insert(out.end(), {-x, 0.0, x});
    }
    return std::vector<std::vector<double>>(steps.size(), out);
  }
  std::vector<EpisodeContext> contexts;
  std::vector<std::vector<std::int64_t>> query_labels;
  std::size_t returns_seen = 0;
};

}  // namespace

TEST_CASE("walk_forward: a perfect-foresight predictor earns the closed-form return after fees") {
  const FamilySource f = source(two_alternating(), "price_direction");
  const WalkForwardConfig config = wf_config();
  const double c = config.trading.fee_rate + config.trading.slippage_rate;
  PerfectForesight oracle;
  Generator gen(3);
  const auto curves = walk_forward(f, oracle, config, gen);
  REQUIRE(curves.size() == 2);
  const std::int64_t rows = f.market->market.rows();
  for (std::size_t k = 0; k < curves.size(); ++k) {
    const EquityCurve& e = curves[k];
    const double a = k == 0 ? 0.02 : 0.01;
    CHECK(e.first_row == f.test_rows.first);
    CHECK(e.last_row == rows - 1 - f.horizon);  // the last h bars are not traded (labels)
    const auto bars = static_cast<double>(e.last_row - e.first_row + 1);
    REQUIRE(e.positions.size() == static_cast<std::size_t>(bars));
    // Positions alternate +-1 every bar: the entry costs c, every flip 2c and the exit c more.
    for (std::size_t t = 1; t < e.positions.size(); ++t) CHECK(e.positions[t] == -e.positions[t - 1]);
    const double expected = (1 + a - c) * std::pow(1 + a - 2 * c, bars - 2) * (1 + a - 3 * c) - 1;
    CHECK(e.total_return == doctest::Approx(expected).epsilon(1e-10));
    CHECK(e.equity.back() - 1 == doctest::Approx(expected).epsilon(1e-10));
    CHECK(e.turnover == doctest::Approx((1 + 2 * (bars - 1) + 1) / bars));
    CHECK(e.max_drawdown == 0.0);
    CHECK(e.sharpe > 0);
    CHECK(e.adaptations == static_cast<std::int64_t>(std::ceil(bars / 24.0)));
  }
}

TEST_CASE("walk_forward: daily returns compound the bars of each UTC day") {
  const FamilySource f = source(two_alternating(), "price_direction");
  PerfectForesight oracle;
  Generator gen(3);
  const EquityCurve e = walk_forward(f, oracle, wf_config(), gen).front();
  REQUIRE(e.day_ms.size() == e.daily_returns.size());
  double product = 1.0;
  std::size_t bar = 0;
  for (std::size_t d = 0; d < e.day_ms.size(); ++d) {
    CHECK(e.day_ms[d] % 86'400'000 == 0);
    double day = 1.0;
    // Bar t's return is booked on the day of bar t + 1's open time.
    while (bar < e.bar_returns.size() && (e.bar_time_ms[bar] + kHourMs) / 86'400'000 * 86'400'000 == e.day_ms[d]) {
      day *= 1.0 + e.bar_returns[bar++];
    }
    CHECK(e.daily_returns[d] == doctest::Approx(day - 1.0).epsilon(1e-12));
    product *= 1.0 + e.daily_returns[d];
  }
  CHECK(bar == e.bar_returns.size());
  CHECK(product - 1 == doctest::Approx(e.total_return).epsilon(1e-12));
  // Hourly bars: full days in the middle have 24 bars.
  CHECK(e.daily_returns.size() == static_cast<std::size_t>((e.bar_time_ms.back() + kHourMs) / 86'400'000 -
                                                           (e.bar_time_ms.front() + kHourMs) / 86'400'000 + 1));
}

TEST_CASE("walk_forward: a flat predictor earns exactly zero") {
  const FamilySource f =
      source(tasks::align({random_walk("AAA/USDT", 800, 1), random_walk("BBB/USDT", 800, 2)}), "price_direction");
  Constant flat({0.4, 2.0, 0.4});  // p(BUY) = p(SELL): position 0
  Generator gen(1);
  for (const auto& curves : {walk_forward(f, flat, wf_config(), gen), flat_curve(f, wf_config())}) {
    REQUIRE(curves.size() == 2);
    for (const EquityCurve& e : curves) {
      CHECK(e.total_return == 0.0);
      for (double p : e.positions) CHECK(p == 0.0);
      for (double r : e.daily_returns) CHECK(r == 0.0);
      CHECK(e.turnover == 0.0);
      CHECK(e.sharpe == 0.0);
      CHECK(e.sortino == 0.0);
      CHECK(e.max_drawdown == 0.0);
    }
  }
}

TEST_CASE("walk_forward: buy-and-hold earns the price ratio less the entry and exit costs") {
  const tasks::Market market = tasks::align({random_walk("AAA/USDT", 900, 5), random_walk("BBB/USDT", 900, 6)});
  for (std::int64_t stride : {1, 3}) {
    CAPTURE(stride);
    const FamilySource f = source(market, "price_direction", stride);
    for (double fee : {0.0, 0.001}) {
      CAPTURE(fee);
      const WalkForwardConfig config = wf_config(fee, fee / 2);
      const double c = 1.5 * fee;
      const auto curves = buy_and_hold_curve(f, config);
      REQUIRE(curves.size() == 2);
      for (const EquityCurve& e : curves) {
        const auto& close = market.series.at(static_cast<std::size_t>(e.series)).close;
        const auto first = static_cast<std::size_t>(e.first_row), last = static_cast<std::size_t>(e.last_row);
        const double r0 = close[first + 1] / close[first] - 1, rt = close[last + 1] / close[last] - 1;
        const double ratio = close[last + 1] / close[first];
        const double expected = ratio * (1 - c / (1 + r0)) * (1 - c / (1 + rt)) - 1;
        CHECK(e.total_return == doctest::Approx(expected).epsilon(1e-10));
        if (fee == 0.0) CHECK(e.total_return == doctest::Approx(ratio - 1).epsilon(1e-12));
        CHECK(e.method == "buy_and_hold");
      }
      // A predictor that always says BUY with certainty is buy-and-hold.
      Constant buy({-1e9, -1e9, 0.0});
      Generator gen(2);
      const auto walked = walk_forward(f, buy, config, gen);
      for (std::size_t k = 0; k < curves.size(); ++k) {
        CHECK(walked[k].total_return == doctest::Approx(curves[k].total_return).epsilon(1e-12));
        CHECK(walked[k].first_row == curves[k].first_row);
        CHECK(walked[k].last_row == curves[k].last_row);
      }
    }
  }
}

TEST_CASE("walk_forward: decision rows lie in the test split, support ends an embargo before, labels are hidden") {
  for (std::int64_t stride : {1, 2}) {
    CAPTURE(stride);
    const FamilySource f = source(tasks::align({random_walk("AAA/USDT", 800, 11)}), "price_direction", stride);
    Recording method;
    WalkForwardConfig config = wf_config();
    config.readapt_every = 10;
    Generator gen(4);
    const EquityCurve e = walk_forward(f, method, config, gen).front();
    REQUIRE(!method.contexts.empty());
    std::int64_t expected_next = e.first_row;
    const std::int64_t per_block = (10 + stride - 1) / stride;
    for (std::size_t k = 0; k < method.contexts.size(); ++k) {
      const EpisodeContext& c = method.contexts[k];
      CHECK(c.query_rows.front() == expected_next);  // every decision row once, at the stride, no gaps
      CHECK(static_cast<std::int64_t>(c.query_rows.size()) <= per_block);
      for (std::size_t j = 1; j < c.query_rows.size(); ++j) CHECK(c.query_rows[j] - c.query_rows[j - 1] == stride);
      for (std::int64_t q : c.query_rows) {
        CHECK(q >= f.test_rows.first);
        CHECK(q + f.horizon < f.test_rows.second);
      }
      CHECK(static_cast<std::int64_t>(c.support_rows.size()) == support_rows(f, config.shots));
      CHECK(c.support_rows.back() + f.horizon < c.query_rows.front());  // support labels known at d
      for (std::int64_t y : method.query_labels[k]) CHECK(y == 0);
      expected_next = c.query_rows.back() + stride;
    }
    CHECK(method.returns_seen == 0);
    CHECK(expected_next > f.test_rows.second - 1 - f.horizon);  // walked to the end
  }
}

TEST_CASE("walk_forward: perturbing bars after T leaves every position up to T unchanged") {
  const std::int64_t bars = 800;
  tasks::Market base = tasks::align({random_walk("AAA/USDT", bars, 21)});
  const FamilySource f = source(base, "price_direction");
  const std::int64_t cut = f.test_rows.first + 37;  // inside a re-adaptation block
  tasks::Market perturbed = base;
  auto& s = perturbed.series[0];
  Generator noise(99);
  for (std::int64_t t = cut + 1; t < bars; ++t) {
    const double k = std::exp(0.05 * noise.normal());
    const auto i = static_cast<std::size_t>(t);
    s.open[i] *= k;
    s.high[i] *= k * 1.01;
    s.low[i] *= k * 0.99;
    s.close[i] *= k;
  }
  const FamilySource g = source(perturbed, "price_direction");
  // The recording double and a real one: a small network trained from scratch on each support set.
  nn::MlpSpec spec;
  spec.sizes = {f.feature_dim, 8, 3};
  const auto net = std::make_shared<nn::Mlp>(spec);
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    std::unique_ptr<Method> m1 =
        which == 0 ? std::unique_ptr<Method>(std::make_unique<Recording>()) : make_scratch_method(net, 0.05);
    std::unique_ptr<Method> m2 =
        which == 0 ? std::unique_ptr<Method>(std::make_unique<Recording>()) : make_scratch_method(net, 0.05);
    Generator gen1(8), gen2(8);
    const EquityCurve a = walk_forward(f, *m1, wf_config(), gen1).front();
    const EquityCurve b = walk_forward(g, *m2, wf_config(), gen2).front();
    REQUIRE(a.positions.size() == b.positions.size());
    const auto upto = static_cast<std::size_t>(cut - a.first_row);
    for (std::size_t t = 0; t <= upto; ++t) CHECK(a.positions[t] == b.positions[t]);
    for (std::size_t t = 0; t < upto; ++t) CHECK(a.bar_returns[t] == b.bar_returns[t]);
    // The perturbation does reach the later positions (the test could fail).
    bool later_differs = false;
    for (std::size_t t = upto + 1; t < a.positions.size(); ++t)
      later_differs = later_differs || a.positions[t] != b.positions[t];
    CHECK(later_differs);
  }
}

TEST_CASE("walk_forward: trades only the configured symbols (tasks.symbols)") {
  const tasks::Market market = tasks::align({random_walk("AAA/USDT", 800, 1), random_walk("BBB/USDT", 800, 2)});
  const FamilySource f = source(market, "price_direction", 1, 4, {"BBB/USDT"});
  const auto curves = buy_and_hold_curve(f, wf_config());
  REQUIRE(curves.size() == 1);
  CHECK(curves[0].asset == "BBB/USDT@sim");
  CHECK(source(market, "price_direction").series_groups.size() == 2);
}

TEST_CASE("walk_forward: the position rule") {
  const double direction[] = {std::log(0.2), std::log(0.3), std::log(0.5)};
  CHECK(position_from_outputs("price_direction", direction, 3) == doctest::Approx(0.3));
  const double regime[] = {std::log(0.1), std::log(0.6), std::log(0.2), std::log(0.1)};
  CHECK(position_from_outputs("market_regime", regime, 4) == doctest::Approx(-0.5));
  const double logits[] = {1000.0, 0.0, -1e9};  // large logits: no overflow
  CHECK(position_from_outputs("price_direction", logits, 3) == doctest::Approx(-1.0));
  CHECK_THROWS_AS(position_from_outputs("risk", direction, 3), Error);
}

TEST_CASE("walk_forward: market_regime trades p(bull) - p(bear)") {
  const FamilySource f = source(tasks::align({random_walk("AAA/USDT", 800, 31)}), "market_regime");
  Constant bull({0.0, -1e9, -1e9, -1e9});
  Generator gen(1);
  const EquityCurve e = walk_forward(f, bull, wf_config(0.0, 0.0), gen).front();
  const EquityCurve hold = buy_and_hold_curve(f, wf_config(0.0, 0.0)).front();
  CHECK(e.total_return == doctest::Approx(hold.total_return).epsilon(1e-12));
  Constant bear({-1e9, 0.0, -1e9, -1e9});
  const EquityCurve s = walk_forward(f, bear, wf_config(0.0, 0.0), gen).front();
  for (double p : s.positions) CHECK(p == -1.0);
}

TEST_CASE("walk_forward: bad inputs name the problem") {
  const FamilySource f = source(tasks::align({random_walk("AAA/USDT", 800, 1)}), "price_direction");
  PerfectForesight oracle;
  Generator gen(1);
  WalkForwardConfig c = wf_config();
  c.readapt_every = 0;
  CHECK_THROWS_WITH_AS(walk_forward(f, oracle, c, gen), doctest::Contains("readapt_every"), Error);
  c = wf_config();
  c.resamples = 3;
  CHECK_THROWS_WITH_AS(walk_forward(f, oracle, c, gen), doctest::Contains("resamples"), Error);
  c = wf_config();
  c.block_length = 0.5;
  CHECK_THROWS_WITH_AS(buy_and_hold_curve(f, c), doctest::Contains("block_length"), Error);
  const FamilySource risk = source(tasks::align({random_walk("AAA/USDT", 800, 1)}), "risk");
  CHECK_THROWS_WITH_AS(walk_forward(risk, oracle, wf_config(), gen), doctest::Contains("not traded"), Error);
  c = wf_config();
  c.shots = 400;  // a support window longer than everything before the test split
  CHECK_THROWS_WITH_AS(walk_forward(f, oracle, c, gen), doctest::Contains("test split"), Error);
  Constant wrong({0.0, 0.0});
  CHECK_THROWS_WITH_AS(walk_forward(f, wrong, wf_config(), gen), doctest::Contains("outputs"), Error);
}

TEST_CASE("walk_forward: a diverged adaptation is flat for its block and counted") {
  const FamilySource f = source(tasks::align({random_walk("AAA/USDT", 800, 1)}), "price_direction");
  Constant nan_method({std::nan(""), 0.0, 0.0});
  Generator gen(1);
  const EquityCurve e = walk_forward(f, nan_method, wf_config(), gen).front();
  CHECK(e.diverged == e.adaptations);
  CHECK(e.total_return == 0.0);
}

TEST_CASE("assign_deflated_sharpe: trials' variance from the methods on the asset, buy-and-hold excluded") {
  const FamilySource f = source(two_alternating(), "price_direction");
  WalkForwardConfig config = wf_config();
  std::vector<EquityCurve> curves = buy_and_hold_curve(f, config);
  PerfectForesight oracle;
  Constant half({std::log(0.25), std::log(0.25), std::log(0.5)});
  Generator gen(1);
  for (Method* m : std::vector<Method*>{&oracle, &half}) {
    for (auto& c : walk_forward(f, *m, config, gen)) curves.push_back(std::move(c));
  }
  assign_deflated_sharpe(curves, 6);
  for (const EquityCurve& c : curves) {
    std::vector<double> trials;
    for (const EquityCurve& o : curves) {
      if (o.asset == c.asset && o.method != "buy_and_hold") trials.push_back(o.sharpe_daily);
    }
    REQUIRE(trials.size() == 2);
    const DeflatedSharpe expected = deflated_sharpe_ratio(c.daily_returns, 6, trial_sharpe_variance(trials));
    CHECK(c.deflated.trials == 6);
    CHECK(c.deflated.trial_variance == doctest::Approx(trial_sharpe_variance(trials)));
    CHECK(c.deflated.dsr == doctest::Approx(expected.dsr));
    CHECK(c.deflated.dsr >= 0.0);
    CHECK(c.deflated.dsr <= 1.0);
  }
  CHECK_THROWS_AS(assign_deflated_sharpe(curves, 0), Error);
  // JSON, Markdown and CSV carry every curve.
  const auto j = walk_forward_json(curves);
  CHECK(j.size() == curves.size());
  CHECK(j[0]["daily_return"].size() == curves[0].daily_returns.size());
  const std::string md = walk_forward_markdown(curves);
  CHECK(md.find("### price_direction") != std::string::npos);
  CHECK(md.find("oracle") != std::string::npos);
  const std::string csv = walk_forward_equity_csv(curves);
  CHECK(csv.rfind("family,method,asset,run,day,daily_return,equity,drawdown\n", 0) == 0);
  CHECK(csv.find("2026-01-") != std::string::npos);
  std::size_t lines = 0;
  for (char ch : csv) lines += ch == '\n';
  std::size_t days = 0;
  for (const auto& c : curves) days += c.daily_returns.size();
  CHECK(lines == days + 1);
}

TEST_CASE(
    "run_benchmark: walk-forward for every method plus buy-and-hold, deflated over methods x runs, in the report") {
  const tasks::Market market = tasks::align({random_walk("AAA/USDT", 700, 41), random_walk("BBB/USDT", 700, 42)});
  const std::vector<FamilySource> families = {source(market, "price_direction"), source(market, "risk")};
  BenchmarkConfig c;
  c.learners = {"maml"};
  c.shots = {1, 2, 3};  // the walk uses the middle one
  c.steps = {2, 1};     // and the first one (learners: the steps their validation episodes chose)
  c.runs = 2;
  c.episodes = 2;
  c.meta_steps = 2;
  c.meta_batch = 2;
  c.hidden = {8};
  c.bootstrap_resamples = 20;
  c.walk_forward.resamples = 50;
  const BenchmarkResult r = run_benchmark(c, families);
  // maml, prior, majority, persistence, scratch, finetune on 2 assets in 2 runs, plus buy-and-hold
  // once per asset; risk is not traded.
  constexpr int kMethods = 6;
  REQUIRE(r.walk_forward.size() == kMethods * 2 * 2 + 2);
  int runs_seen[2] = {0, 0};
  for (const EquityCurve& e : r.walk_forward) {
    CHECK(e.family == "price_direction");
    CHECK(e.shots == 2);
    if (e.method == "maml") {
      CHECK((e.steps == 1 || e.steps == 2));
    } else {
      CHECK(e.steps == 2);
    }
    CHECK(e.deflated.trials == kMethods * 2);
    CHECK(e.first_row >= families[0].test_rows.first);
    ++runs_seen[e.run];
  }
  CHECK(runs_seen[0] == kMethods * 2 + 2);
  CHECK(runs_seen[1] == kMethods * 2);
  // The learner trades with the steps of its headline verdict (chosen on validation).
  for (const auto& v : r.verdicts) {
    if (v.family != "price_direction") continue;
    for (const EquityCurve& e : r.walk_forward) {
      if (e.method == v.learner) CHECK(e.steps == v.steps);
    }
  }
  CHECK(report_json(r)["walk_forward"].size() == r.walk_forward.size());
  CHECK(report_markdown(r).find("## Walk-forward trading (test split, stitched)") != std::string::npos);
  const auto dir = std::filesystem::temp_directory_path() / "metatape_walk_forward_report";
  std::filesystem::remove_all(dir);
  write_report(r, dir.string());
  std::ifstream equity(dir / "equity.csv");
  REQUIRE(equity.good());
  std::string header;
  std::getline(equity, header);
  CHECK(header == "family,method,asset,run,day,daily_return,equity,drawdown");
  std::filesystem::remove_all(dir);

  c.walk_forward.enabled = false;
  c.runs = 1;
  const BenchmarkResult off = run_benchmark(c, families);
  CHECK(off.walk_forward.empty());
  CHECK(report_markdown(off).find("Walk-forward") == std::string::npos);
}
