// triangular_arbitrage: candidates find the triangle X/Q, X/B, B/Q on one exchange; labels follow the
// definition (|log XQ - log XB - log BQ| above three fees plus the margin within the horizon); bad
// requests are refused naming the problem; real ETH/USDT, ETH/BTC, BTC/USDT 5-minute candles make a
// task (skipped, visibly, without ../shared/data).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "autograd/random.h"
#include "kernels/error.h"
#include "tasks/families.h"
#include "tasks/loaders.h"
#include "tasks/simulator.h"
#include "shared_data.h"

using namespace metatape;
using namespace metatape::tasks;
namespace fs = std::filesystem;

namespace {

// Two simulated assets become ETH/USDT and BTC/USDT; ETH/BTC is their ratio times exp(noise), so the
// cycle deviation is exactly the noise.
Market triangle_market(std::vector<double>& deviation) {
  SimulatorConfig c;
  c.bars = 800;
  c.assets = 2;
  c.exchanges = 1;
  c.seed = 5;
  Market sim = simulate_market(c).market;
  Series xq = sim.series[0], bq = sim.series[1];
  xq.symbol = "ETH/USDT";
  bq.symbol = "BTC/USDT";
  Series xb = xq;
  xb.symbol = "ETH/BTC";
  Generator gen(9);
  deviation.clear();
  for (std::size_t u = 0; u < xq.time_ms.size(); ++u) {
    const double e = 0.002 * gen.normal();
    deviation.push_back(e);
    const double price = xq.close[u] / bq.close[u] * std::exp(e);
    xb.open[u] = xb.high[u] = xb.low[u] = xb.close[u] = price;
  }
  return align({xq, bq, xb}, AlignMode::intersect);  // series order: ETH/USDT, BTC/USDT, ETH/BTC
}

}  // namespace

TEST_CASE("triangular_arbitrage: candidates, labels by definition, features and errors") {
  std::vector<double> dev;
  const auto m = PreparedMarket::make(triangle_market(dev));
  const auto fam = make_family("triangular_arbitrage");
  CHECK(fam->name() == "triangular_arbitrage");
  CHECK(fam->num_classes() == 2);
  const auto cands = fam->candidates(m->market);
  REQUIRE(cands.size() == 1);
  CHECK(cands[0] == std::vector<int>{0, 2, 1});                    // ETH/USDT, ETH/BTC, BTC/USDT
  CHECK(make_family("arbitrage")->candidates(m->market).empty());  // one exchange: no cross-exchange pair

  TaskRequest q;
  q.series = cands[0];
  q.begin = m->warmup;
  q.support_size = 300;
  q.query_size = 50;
  q.horizon = 3;
  const Task t = fam->make_task(*m, q);
  CHECK(t.support_x.shape()[1] == fam->feature_dim(*m));
  CHECK(fam->feature_dim(*m) == m->feature_config.count() + 8);
  // Fees 0.001 per pair (the series default) x 3 + the 0.05 % margin.
  const double threshold = 3 * 0.001 + 0.0005;
  const auto y = t.support_y.to_vector<std::int64_t>();
  std::int64_t ones = 0;
  for (std::int64_t i = 0; i < q.support_size; ++i) {
    const std::int64_t row = q.begin + i;
    int want = 0;
    for (std::int64_t u = row + 1; u <= row + q.horizon; ++u)
      want |= std::fabs(dev[static_cast<std::size_t>(u)]) > threshold;
    CHECK_MESSAGE(y[static_cast<std::size_t>(i)] == want, "row ", row);
    ones += want;
  }
  CHECK(ones > 0);
  CHECK(ones < q.support_size);

  TaskRequest two = q;
  two.series = {0, 2};
  CHECK_THROWS_WITH_AS(fam->make_task(*m, two), doctest::Contains("three series"), Error);
  TaskRequest wrong = q;
  wrong.series = {0, 1, 2};  // ETH/USDT, BTC/USDT, ETH/BTC: not X/Q, X/B, B/Q
  CHECK_THROWS_WITH_AS(fam->make_task(*m, wrong), doctest::Contains("do not form a triangle"), Error);
}

TEST_CASE("real data: triangular_arbitrage on real ETH/USDT, ETH/BTC, BTC/USDT 5-minute candles") {
  const fs::path dir = fs::path(METATAPE_SHARED_DATA_DIR) / "market" / "tooyipjee-freqtrade";
  if (!test::have_shared_data(dir / "ETH_BTC-5m.json.gz")) return;
  std::vector<Series> series;
  for (const char* name : {"ETH_USDT-5m.json.gz", "ETH_BTC-5m.json.gz", "BTC_USDT-5m.json.gz"}) {
    LoadOptions o;
    o.exchange = "binance";
    o.policy = ValidationPolicy::repair;
    series.push_back(load_series((dir / name).string(), o).series);
  }
  CHECK(series[1].symbol == "ETH/BTC");
  const auto m = PreparedMarket::make(align(series, AlignMode::intersect));
  REQUIRE(m->market.rows() > 2000);
  const auto fam = make_family("triangular_arbitrage");
  const auto cands = fam->candidates(m->market);
  REQUIRE(cands.size() == 1);
  TaskRequest q;
  q.series = cands[0];
  q.begin = m->warmup;
  q.support_size = 1000;
  q.query_size = 100;
  q.horizon = 6;
  const Task t = fam->make_task(*m, q);
  const auto y = t.support_y.to_vector<std::int64_t>();
  std::int64_t ones = 0;
  for (auto v : y) ones += v;
  // The legs must be combined the right way round: on real closes the cycle deviation is tiny (a sign
  // or leg mistake would make it the size of log(BTC price)).
  std::vector<double> dev;
  const auto& s = m->market.series;
  for (std::int64_t u = 0; u < m->market.rows(); ++u) {
    const auto c = [&](int k) {
      return std::log(
          s[static_cast<std::size_t>(cands[0][static_cast<std::size_t>(k)])].close[static_cast<std::size_t>(u)]);
    };
    dev.push_back(std::fabs(c(0) - c(1) - c(2)));
  }
  std::sort(dev.begin(), dev.end());
  const double median = dev[dev.size() / 2], largest = dev.back();
  // With 0.1 % taker fees per leg, a triangle rarely pays on 5-minute closes: report what was seen.
  MESSAGE("real triangle " << s[static_cast<std::size_t>(cands[0][0])].label() << ": " << m->market.rows()
                           << " aligned bars, median |deviation| " << median << ", largest " << largest
                           << ", positive rate " << static_cast<double>(ones) / 1000.0);
  CHECK(median < 1e-3);
  CHECK(t.support_x.shape() == Shape{1000, fam->feature_dim(*m)});
}
