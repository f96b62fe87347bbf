#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "kernels/error.h"
#include "tasks/families.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {
std::shared_ptr<const PreparedMarket> sim_market(std::int64_t bars = 1500, int assets = 3) {
  SimulatorConfig c;
  c.bars = bars;
  c.assets = assets;
  c.exchanges = 2;
  c.seed = 21;
  c.cross_pairs = true;  // SIMa/SIM0 pairs, so triangular_arbitrage has triangles
  return PreparedMarket::make(simulate_market(c).market);
}

TaskRequest request_for(const TaskFamily& fam, const PreparedMarket& m, std::int64_t begin, std::int64_t horizon) {
  TaskRequest q;
  q.series = fam.candidates(m.market).front();
  q.begin = begin;
  q.support_size = 24;
  q.query_size = 16;
  q.horizon = horizon;
  return q;
}
}  // namespace

TEST_CASE("families: shapes, kinds, labels, and support strictly before query with the embargo") {
  const auto m = sim_market();
  const std::int64_t interval = m->market.interval_ms();
  for (const std::string& name : family_names()) {
    CAPTURE(name);
    const auto fam = make_family(name);
    for (std::int64_t h : {1, 4, 12}) {
      CAPTURE(h);
      const TaskRequest q = request_for(*fam, *m, m->warmup + 10, h);
      const Task t = fam->make_task(*m, q);
      const TaskRequest nq = fam->normalise(*m, q);
      CHECK(t.family == name);
      CHECK(t.support_x.shape() == Shape{24, fam->feature_dim(*m)});
      CHECK(t.query_x.shape() == Shape{16, fam->feature_dim(*m)});
      CHECK(t.support_x.dtype() == DType::f32);
      // Support ends, plus the embargo (>= the label horizon), strictly before query begins.
      CHECK(t.support_begin_ms < t.support_end_ms);
      CHECK(t.query_begin_ms - t.support_end_ms >= (nq.horizon + 1) * interval);
      CHECK(t.query_begin_ms - t.support_end_ms == (nq.effective_embargo() + 1) * interval);
      CHECK(t.query_begin_ms < t.query_end_ms);
      CHECK(t.difficulty >= 0.0);
      CHECK(t.difficulty <= 1.0);
      CHECK(t.quality > 0.0);
      CHECK(t.quality <= 1.0);
      for (float v : t.support_x.to_vector<float>()) REQUIRE(std::isfinite(v));
      for (float v : t.query_x.to_vector<float>()) REQUIRE(std::isfinite(v));
      if (t.kind == TaskKind::classification) {
        CHECK(t.support_y.dtype() == DType::i64);
        for (std::int64_t y : t.support_y.to_vector<std::int64_t>()) REQUIRE((y >= 0 && y < t.num_classes));
      } else {
        CHECK(t.support_y.dim(0) == 24);
      }
      // Normalisation is fitted on support: support columns have mean ~0.
      const auto sx = t.support_x.to_vector<float>();
      const std::int64_t D = t.support_x.dim(1);
      double mean0 = 0;
      for (std::int64_t r = 0; r < 24; ++r) mean0 += sx[static_cast<std::size_t>(r * D)];
      CHECK(std::fabs(mean0 / 24) < 1e-4);
    }
  }
  CHECK(make_family("price_direction")->num_classes() == 3);
  CHECK(make_family("market_regime")->num_classes() == 4);
  CHECK(make_family("arbitrage")->num_classes() == 2);
  CHECK(make_family("portfolio")->kind() == TaskKind::portfolio);
  CHECK(make_family("risk")->kind() == TaskKind::regression);
  FamilyConfig var;
  var.risk_var_exceedance = true;
  CHECK(make_family("risk", var)->kind() == TaskKind::classification);
  CHECK_THROWS_WITH_AS(make_family("momentum"), doctest::Contains("known: price_direction"), Error);
}

TEST_CASE("families: labels follow their documented definitions") {
  const auto m = sim_market();
  const Series& s = m->market.series[0];
  const std::int64_t h = 4, begin = m->warmup + 5;
  TaskRequest q;
  q.series = {0};
  q.begin = begin;
  q.support_size = 30;
  q.query_size = 10;
  q.horizon = h;
  const Task dir = make_family("price_direction")->make_task(*m, q);
  const auto y = dir.support_y.to_vector<std::int64_t>();
  for (std::int64_t i = 0; i < 30; ++i) {
    const std::int64_t t = begin + i;
    double sq = 0;
    for (std::int64_t k = t - 19; k <= t; ++k)
      sq += std::pow(std::log(s.close[static_cast<std::size_t>(k)] / s.close[static_cast<std::size_t>(k - 1)]), 2);
    const double thr = 0.5 * std::sqrt(sq / 20) * 2.0;
    const double fwd = std::log(s.close[static_cast<std::size_t>(t + h)] / s.close[static_cast<std::size_t>(t)]);
    CHECK(y[static_cast<std::size_t>(i)] == (fwd > thr ? 2 : fwd < -thr ? 0 : 1));
  }
  const Task risk = make_family("risk")->make_task(*m, q);
  const auto ry = risk.support_y.to_vector<float>();
  double fv = 0;
  for (std::int64_t k = begin + 1; k <= begin + h; ++k)
    fv += std::pow(std::log(s.close[static_cast<std::size_t>(k)] / s.close[static_cast<std::size_t>(k - 1)]), 2);
  CHECK(ry[0] == doctest::Approx(std::log(std::sqrt(fv / h))).epsilon(1e-5));
  // Portfolio: y = next-period simple returns per asset, the period = one day of 1h bars.
  const auto port = make_family("portfolio");
  TaskRequest pq = q;
  pq.series = port->candidates(m->market).front();
  pq.support_size = 10;
  pq.query_size = 5;
  const Task p = port->make_task(*m, pq);
  CHECK(p.support_y.shape() == Shape{10, 3});
  const Series& a1 = m->market.series[static_cast<std::size_t>(pq.series[1])];
  CHECK(p.support_y.at({1, 1}) ==
        doctest::Approx(
            a1.close[static_cast<std::size_t>(begin + 48)] / a1.close[static_cast<std::size_t>(begin + 24)] - 1)
            .epsilon(1e-5));
  CHECK(p.query_begin_ms - p.support_end_ms >= 25 * m->market.interval_ms());
  // Arbitrage labels both classes on the simulated two-exchange market.
  TaskRequest aq = q;
  aq.series = make_family("arbitrage")->candidates(m->market).front();
  aq.support_size = 200;
  const Task arb = make_family("arbitrage")->make_task(*m, aq);
  const auto ay = arb.support_y.to_vector<std::int64_t>();
  const auto ones = std::count(ay.begin(), ay.end(), 1);
  MESSAGE("arbitrage positive rate " << static_cast<double>(ones) / 200.0);
  CHECK(ones > 0);
  CHECK(ones < 200);
}

TEST_CASE("families: invalid requests are refused with the reason") {
  const auto m = sim_market(600, 1);
  const auto fam = make_family("price_direction");
  TaskRequest q;
  q.series = {0};
  q.begin = m->warmup;
  q.horizon = 4;
  q.embargo = 2;
  CHECK_THROWS_WITH_AS(fam->make_task(*m, q), doctest::Contains("shorter than the label horizon"), Error);
  q.embargo = 0;
  q.begin = 5;
  CHECK_THROWS_WITH_AS(fam->make_task(*m, q), doctest::Contains("before the first usable row"), Error);
  q.begin = 590;
  CHECK_THROWS_WITH_AS(fam->make_task(*m, q), doctest::Contains("but the market has 600"), Error);
  // Arbitrage needs two exchanges.
  SimulatorConfig one;
  one.bars = 400;
  one.exchanges = 1;
  const auto single = PreparedMarket::make(simulate_market(one).market);
  CHECK(make_family("arbitrage")->candidates(single->market).empty());
  TaskRequest aq;
  aq.series = {0};
  aq.begin = single->warmup;
  CHECK_THROWS_WITH_AS(make_family("arbitrage")->make_task(*single, aq), doctest::Contains(">= 2 exchanges"), Error);
}

TEST_CASE("families: no label window reaches into the query, the features at each row are causal") {
  // Shifting every bar after the last support label window must leave the support set unchanged
  // except through normalisation, which is fitted on support only: support tensors are identical.
  SimulatorConfig c;
  c.bars = 900;
  c.assets = 3;
  c.exchanges = 2;
  c.seed = 4;
  c.cross_pairs = true;
  const Market base = simulate_market(c).market;
  FamilyConfig fc;
  fc.rebalance = std::string(1, '6');  // not = "6": GCC 12 -Wrestrict false positive
  for (const std::string& name : family_names()) {
    CAPTURE(name);
    const auto fam = make_family(name, fc);
    const auto m = PreparedMarket::make(base);
    TaskRequest q = request_for(*fam, *m, m->warmup + 3, 6);
    q = fam->normalise(*m, q);
    const Task t = fam->make_task(*m, q);
    // Perturb every bar after the last support label bar (s_last + horizon).
    const std::int64_t s_last = q.begin + (q.support_size - 1) * q.stride;
    Market changed = base;
    for (Series& s : changed.series)
      for (std::int64_t k = s_last + q.horizon + 1; k < s.size(); ++k) {
        const auto i = static_cast<std::size_t>(k);
        s.open[i] *= 1.5, s.high[i] *= 1.5, s.low[i] *= 1.5, s.close[i] *= 1.5, s.volume[i] *= 3;
      }
    const auto m2 = PreparedMarket::make(changed);
    const Task t2 = fam->make_task(*m2, q);
    CHECK(t.support_x.to_vector<float>() == t2.support_x.to_vector<float>());
    CHECK(t.support_y.to_vector<double>() == t2.support_y.to_vector<double>());
  }
}
