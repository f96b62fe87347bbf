#include <doctest/doctest.h>

#include <cmath>

#include "kernels/error.h"
#include "tasks/features.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {
Series sample_series(std::int64_t bars = 600) {
  SimulatorConfig c;
  c.bars = bars;
  c.assets = 1;
  c.exchanges = 1;
  c.seed = 5;
  return simulate_market(c).market.series[0];
}
}  // namespace

TEST_CASE("features: 50 named, finite columns by default; configurable") {
  const FeatureConfig config;
  CHECK(config.count() == 50);
  CHECK(config.names().size() == 50);
  const Series s = sample_series();
  const FeatureMatrix f = compute_features(s, config);
  CHECK(f.rows == s.size());
  CHECK(f.cols == 50);
  CHECK(f.warmup == config.warmup());
  CHECK(f.warmup < 200);
  for (double v : f.values) REQUIRE(std::isfinite(v));
  // Spot checks against direct formulas at one row.
  const std::int64_t t = 300;
  const auto i = static_cast<std::size_t>(t);
  CHECK(f.at(t, 0) == doctest::Approx(std::log(s.close[i] / s.close[i - 1])));
  CHECK(f.at(t, 3) == doctest::Approx(std::log(s.close[i] / s.close[i - 5])));
  double q = 0;
  for (std::size_t k = i - 4; k <= i; ++k) q += std::pow(std::log(s.close[k] / s.close[k - 1]), 2);
  CHECK(f.at(t, 9) == doctest::Approx(std::sqrt(q / 5)));  // rvol_5
  for (std::int64_t r = f.warmup; r < f.rows; ++r) {
    const double rsi = f.at(r, 14), pb_stoch = f.at(r, 32);
    REQUIRE(rsi >= -1.0);
    REQUIRE(rsi <= 1.0);
    REQUIRE(pb_stoch >= 0.0);
    REQUIRE(pb_stoch <= 1.0);
  }
  FeatureConfig small;
  small.return_lags = {1, 2};
  small.vol_windows = {5};
  small.rsi_periods = {};
  small.macd = {};
  small.bollinger_windows = {};
  small.atr_periods = {};
  small.stochastic_periods = {};
  small.volume_z_windows = {};
  small.range_windows = {};
  small.skew_windows = {};
  small.kurtosis_windows = {};
  small.price_z_windows = {};
  small.sma_ratios = {};
  small.up_fraction_windows = {};
  CHECK(small.count() == 3);
  CHECK(compute_features(s, small).cols == 3);
}

TEST_CASE("look-ahead guard: the real features pass, a label shifted one step into the features is caught") {
  const Series s = sample_series(400);
  const FeatureConfig config;
  const std::vector<std::int64_t> rows = {config.warmup(), 150, 251, 398};
  CHECK_NOTHROW(check_no_lookahead(
      s, [&](const Series& x) { return compute_features(x, config); }, rows));

  // A leaky feature set: the label (next bar's return) shifted one step back into row t.
  auto leaky = [&](const Series& x) {
    FeatureMatrix f = compute_features(x, config);
    FeatureMatrix out = f;
    out.cols = f.cols + 1;
    out.names.push_back("next_return");
    out.values.assign(static_cast<std::size_t>(out.rows * out.cols), 0.0);
    for (std::int64_t t = 0; t < f.rows; ++t) {
      for (std::int64_t j = 0; j < f.cols; ++j) out.values[static_cast<std::size_t>(t * out.cols + j)] = f.at(t, j);
      if (t + 1 < x.size())
        out.values[static_cast<std::size_t>(t * out.cols + f.cols)] =
            std::log(x.close[static_cast<std::size_t>(t + 1)] / x.close[static_cast<std::size_t>(t)]);
    }
    return out;
  };
  CHECK_THROWS_WITH_AS(check_no_lookahead(s, leaky, rows), doctest::Contains("look-ahead: feature 'next_return'"),
                       Error);

  // A centred moving average (uses t+1) is caught too.
  auto centred = [&](const Series& x) {
    FeatureMatrix f;
    f.rows = x.size();
    f.cols = 1;
    f.names = {"centred_sma3"};
    f.values.assign(static_cast<std::size_t>(f.rows), 0.0);
    for (std::int64_t t = 1; t + 1 < f.rows; ++t)
      f.values[static_cast<std::size_t>(t)] =
          (x.close[static_cast<std::size_t>(t - 1)] + x.close[static_cast<std::size_t>(t)] +
           x.close[static_cast<std::size_t>(t + 1)]) /
          3;
    return f;
  };
  CHECK_THROWS_AS(check_no_lookahead(s, centred, {200}), Error);
}

TEST_CASE("normaliser: fitted on given rows only, clipped, constant columns map to 0") {
  const std::vector<double> a = {1, 5, 0}, b = {3, 5, 0}, outlier = {1000, 5, 0};
  const Normalizer n = Normalizer::fit({a.data(), b.data()}, 3);
  CHECK(n.mean[0] == 2.0);
  CHECK(n.stddev[0] == 1.0);
  float out[3];
  n.apply(outlier.data(), out, 3);
  CHECK(out[0] == doctest::Approx(8.0));  // clipped at 8 standard deviations
  CHECK(out[1] == 0.0f);
  CHECK_THROWS_AS(Normalizer::fit({}, 3), Error);
}
