#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "tasks/loaders.h"
#include "tasks/sampler.h"
#include "shared_data.h"

using namespace metatape;
using namespace metatape::tasks;
namespace fs = std::filesystem;

TEST_CASE("real data: Binance spot vs Bybit perpetual daily candles make tasks in every family they support") {
  // (All but triangular_arbitrage: these files hold no cross pairs; tests/tasks/triangular_test.cpp
  // covers it on real ETH/USDT, ETH/BTC, BTC/USDT candles.)
  const fs::path dir = fs::path(METATAPE_SHARED_DATA_DIR) / "market";
  if (!test::have_shared_data(dir / "SOURCES.md")) return;
  std::vector<Series> series;
  for (const char* sym : {"BTCUSDT", "ETHUSDT", "SOLUSDT"}) {
    LoadOptions binance;
    binance.exchange = "binance";
    series.push_back(
        load_series((dir / "djienne-Hurst_Crypto" / (std::string(sym) + ".csv.gz")).string(), binance).series);
    LoadOptions bybit;
    bybit.exchange = "bybit";
    bybit.policy = ValidationPolicy::repair;  // SOURCES.md: one duplicate timestamp per Bybit file
    const LoadResult r =
        load_series((dir / "jumpotsa-Bybit_Cross_Momentum" / (std::string(sym) + ".csv.gz")).string(), bybit);
    CHECK(r.report.count(Defect::duplicate_timestamp) == 1);
    series.push_back(r.series);
  }
  CHECK(series[0].symbol == "BTC/USDT");
  CHECK(series[1].symbol == "BTC/USDT");
  CHECK(series[0].interval == "1d");
  const Market market = align(series, AlignMode::intersect);
  CHECK(market.rows() > 1000);
  CHECK(market.exchanges_of("ETH/USDT") == std::vector<std::string>{"binance", "bybit"});
  DistributionConfig c;
  c.families = family_names();
  c.support_size = 20;
  c.query_size = 10;
  c.horizons = {3};
  c.family.portfolio_assets = 3;
  c.splits.holdout_symbols = {"SOL/USDT"};
  auto dist = std::make_shared<const TaskDistribution>(PreparedMarket::make(market), c);
  Generator gen(1);
  std::map<std::string, int> one_class;
  for (Split split : {Split::train, Split::validation, Split::test}) {
    for (const Task& t : dist->sample_batch(split, 10, gen)) {
      // Portfolio's label horizon is its rebalance period: one daily bar here; the others use 3.
      const std::int64_t horizon = t.family == "portfolio" ? 1 : 3;
      CHECK(t.query_begin_ms - t.support_end_ms >= (horizon + 1) * 86'400'000LL);
      CHECK(t.quality >= 0.0);
      CHECK(t.quality <= 1.0);
      if (t.quality == 0.0) one_class[t.family]++;  // a single-class support set has zero balance
    }
  }
  for (const auto& [family, n] : one_class) MESSAGE(family << ": " << n << " tasks with a one-class support set");
  // The sampler's minimum quality removes them.
  SamplerConfig sc;
  sc.min_quality = 0.2;
  sc.workers = 2;
  Sampler sampler(dist, sc);
  for (const Task& t : sampler.next_batch(20)) CHECK(t.quality >= 0.2);
}
