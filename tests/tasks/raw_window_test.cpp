#include <doctest/doctest.h>

#include <cmath>

#include "kernels/error.h"
#include "tasks/families.h"
#include "tasks/features.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {
FeatureConfig raw_config(std::int64_t length) {
  FeatureConfig c;
  c.set = FeatureSet::raw_window;
  c.raw_window.length = length;
  return c;
}

Series sample_series(std::int64_t bars = 300) {
  SimulatorConfig c;
  c.bars = bars;
  c.assets = 1;
  c.exchanges = 1;
  c.seed = 7;
  return simulate_market(c).market.series[0];
}

std::shared_ptr<const PreparedMarket> raw_market(std::int64_t length) {
  SimulatorConfig c;
  c.bars = 700;
  c.assets = 3;
  c.exchanges = 2;
  c.seed = 21;
  c.cross_pairs = true;
  return PreparedMarket::make(simulate_market(c).market, raw_config(length));
}
}  // namespace

TEST_CASE("raw window: channel-major layout, direct formulas, warmup and names") {
  const std::int64_t W = 6;
  const FeatureConfig config = raw_config(W);
  CHECK(config.count() == 5 * W);
  CHECK(config.warmup() == W);
  const auto names = config.names();
  REQUIRE(names.size() == 30);
  CHECK(names.front() == "ret_t-5");
  CHECK(names[5] == "ret_t-0");
  CHECK(names[6] == "high_t-5");
  CHECK(names.back() == "volume_t-0");

  const Series s = sample_series();
  const FeatureMatrix f = compute_features(s, config);
  CHECK(f.cols == 5 * W);
  CHECK(f.warmup == W);
  for (std::int64_t j = 0; j < f.cols; ++j) CHECK(f.at(W - 1, j) == 0.0);  // before warmup
  const std::int64_t t = 100;
  // Unscaled channels of bar u, then the window's scale and volume mean, straight from the definition.
  double raw[5][W], sq = 0, vmean = 0;
  for (std::int64_t j = 0; j < W; ++j) {
    const auto u = static_cast<std::size_t>(t - (W - 1) + j);
    raw[0][j] = std::log(s.close[u] / s.close[u - 1]);
    raw[1][j] = std::log(s.high[u] / s.close[u]);
    raw[2][j] = std::log(s.low[u] / s.close[u]);
    raw[3][j] = std::log(s.open[u] / s.close[u]);
    raw[4][j] = std::log1p(s.volume[u]);
    for (int c = 0; c < 4; ++c) sq += raw[c][j] * raw[c][j];
    vmean += raw[4][j] / W;
  }
  const double scale = std::sqrt(sq / (4 * W));
  for (int c = 0; c < 4; ++c)
    for (std::int64_t j = 0; j < W; ++j) CHECK(f.at(t, c * W + j) == doctest::Approx(raw[c][j] / scale));
  for (std::int64_t j = 0; j < W; ++j) CHECK(f.at(t, 4 * W + j) == doctest::Approx(raw[4][j] - vmean));
  // The last time step of channel 0 is bar t's own return.
  CHECK(f.at(t, W - 1) * scale == doctest::Approx(std::log(s.close[100] / s.close[99])));
  // Price channels are bounded by sqrt(4W) and the high/low channels have their signs.
  for (std::int64_t r = W; r < f.rows; ++r)
    for (std::int64_t j = 0; j < W; ++j) {
      REQUIRE(std::fabs(f.at(r, j)) <= std::sqrt(4.0 * W) + 1e-9);
      REQUIRE(f.at(r, W + j) >= 0.0);
      REQUIRE(f.at(r, 2 * W + j) <= 0.0);
    }
}

TEST_CASE("raw window: scale-free, finite on flat prices and zero volume, bad length named") {
  const std::int64_t W = 8;
  const Series s = sample_series(120);
  Series scaled = s;
  for (auto* col : {&scaled.open, &scaled.high, &scaled.low, &scaled.close}) {
    for (double& v : *col) v *= 250.0;
  }
  for (double& v : scaled.volume) v = v * 40.0 + 39.0;  // log1p(40 v + 39) = log1p(v) + log 40
  const FeatureMatrix a = compute_features(s, raw_config(W)), b = compute_features(scaled, raw_config(W));
  for (std::int64_t i = W * a.cols; i < static_cast<std::int64_t>(a.values.size()); ++i)
    REQUIRE(a.values[static_cast<std::size_t>(i)] ==
            doctest::Approx(b.values[static_cast<std::size_t>(i)]).epsilon(1e-6).scale(1.0));

  Series flat;
  flat.symbol = "FLAT/USD";
  for (std::int64_t k = 0; k < 40; ++k) flat.push_back(k * 3'600'000, 5.0, 5.0, 5.0, 5.0, 0.0);
  const FeatureMatrix f = compute_features(flat, raw_config(W));
  for (double v : f.values) REQUIRE(v == 0.0);

  CHECK_THROWS_WITH_AS(compute_features(s, raw_config(1)), doctest::Contains("raw_window.length"), Error);
  CHECK(parse_feature_set("raw_window") == FeatureSet::raw_window);
  CHECK_THROWS_WITH_AS(parse_feature_set("raw"), doctest::Contains("indicators or raw_window"), Error);
}

TEST_CASE("raw window: passes the look-ahead guard") {
  const Series s = sample_series(200);
  const FeatureConfig config = raw_config(16);
  CHECK_NOTHROW(
      check_no_lookahead(s, [&](const Series& x) { return compute_features(x, config); }, {16, 17, 60, 133, 199}));
}

TEST_CASE("raw window: every family builds (channels, W) rows; no support-fitted normaliser") {
  const std::int64_t W = 12;
  const auto m = raw_market(W);
  CHECK(m->warmup == W);
  for (const std::string& name : family_names()) {
    CAPTURE(name);
    const auto fam = make_family(name);
    TaskRequest q;
    q.series = fam->candidates(m->market).front();
    q.begin = fam->min_begin(*m) + 5;
    q.support_size = 10;
    q.query_size = 6;
    q.horizon = 3;
    const Task t = fam->make_task(*m, q);
    const std::int64_t D = fam->feature_dim(*m);
    CHECK(t.support_x.shape() == Shape{10, D});
    REQUIRE(D % W == 0);
    const std::int64_t channels = D / W;
    if (name == "arbitrage" || name == "triangular_arbitrage")
      CHECK(channels == 6);
    else if (name == "portfolio")
      CHECK(channels == 5 * static_cast<std::int64_t>(q.series.size()));
    else
      CHECK(channels == 5);
    for (float v : t.support_x.to_vector<float>()) REQUIRE(std::isfinite(v));
    // The first series' block of the first support row is its raw window, unchanged.
    const TaskRequest nq = fam->normalise(*m, q);
    const FeatureMatrix& f = m->features[static_cast<std::size_t>(q.series[0])];
    const auto sx = t.support_x.to_vector<float>();
    for (std::int64_t j = 0; j < 5 * W; ++j)
      REQUIRE(sx[static_cast<std::size_t>(j)] == static_cast<float>(f.at(nq.begin, j)));
    if (channels == 6) {
      // The deviation channel: d(u) / (fees + margin) over the same W bars, the newest last.
      const double threshold = arbitrage_threshold(m->market, q.series, fam->config().arbitrage_margin);
      const double d_now = arbitrage_deviation(m->market, q.series, nq.begin);
      CHECK(sx[static_cast<std::size_t>(6 * W - 1)] == doctest::Approx(d_now / threshold).epsilon(1e-5));
    }
  }
}
