#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "kernels/error.h"
#include "tasks/loaders.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {

std::vector<double> log_returns(const Series& s) {
  std::vector<double> r;
  for (std::int64_t t = 1; t < s.size(); ++t)
    r.push_back(std::log(s.close[static_cast<std::size_t>(t)] / s.close[static_cast<std::size_t>(t - 1)]));
  return r;
}

double autocorr(const std::vector<double>& x, int lag) {
  double m = 0;
  for (double v : x) m += v;
  m /= static_cast<double>(x.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    den += (x[i] - m) * (x[i] - m);
    if (i >= static_cast<std::size_t>(lag)) num += (x[i] - m) * (x[i - static_cast<std::size_t>(lag)] - m);
  }
  return num / den;
}

double excess_kurtosis(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m += v;
  m /= static_cast<double>(x.size());
  double m2 = 0, m4 = 0;
  for (double v : x) {
    m2 += (v - m) * (v - m);
    m4 += std::pow(v - m, 4);
  }
  m2 /= static_cast<double>(x.size());
  m4 /= static_cast<double>(x.size());
  return m4 / (m2 * m2) - 3.0;
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= static_cast<double>(a.size());
  mb /= static_cast<double>(b.size());
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

}  // namespace

TEST_CASE("simulator: deterministic by seed, valid OHLCV, several assets and exchanges") {
  SimulatorConfig c;
  c.bars = 1500;
  c.assets = 3;
  c.exchanges = 2;
  const SimulatedMarket a = simulate_market(c), b = simulate_market(c);
  REQUIRE(a.market.series.size() == 6);
  CHECK(a.market.rows() == 1500);
  for (std::size_t k = 0; k < a.market.series.size(); ++k) {
    a.market.series[k].check();
    CHECK(a.market.series[k].close == b.market.series[k].close);
    CHECK(a.market.series[k].volume == b.market.series[k].volume);
  }
  CHECK(a.market.symbols().size() == 3);
  CHECK(a.market.exchanges_of("SIM0/USD") == std::vector<std::string>{"simx0", "simx1"});
  c.seed = 2;
  CHECK(simulate_market(c).market.series[0].close != a.market.series[0].close);
  c.garch_alpha = 0.5;
  c.garch_beta = 0.6;
  CHECK_THROWS_WITH_AS(simulate_market(c), doctest::Contains("must be < 1"), Error);
}

TEST_CASE("simulator: regimes persist, volatility clusters, fat tails, correlated assets, volume follows volatility") {
  SimulatorConfig c;
  c.bars = 20000;
  c.assets = 2;
  c.exchanges = 2;
  c.seed = 11;
  const SimulatedMarket sim = simulate_market(c);
  // Mean regime duration: expected 1 / (1 - 0.985) = 66.7 bars; bound: within [40, 110].
  int runs = 1;
  for (std::size_t t = 1; t < sim.regimes.size(); ++t) runs += sim.regimes[t] != sim.regimes[t - 1];
  const double mean_duration = static_cast<double>(sim.regimes.size()) / runs;
  MESSAGE("mean regime duration " << mean_duration << " bars");
  CHECK(mean_duration > 40.0);
  CHECK(mean_duration < 110.0);
  // Every regime occurs.
  for (int r = 0; r < kRegimeCount; ++r)
    CHECK(std::count(sim.regimes.begin(), sim.regimes.end(), static_cast<Regime>(r)) > 500);

  const auto r0 = log_returns(sim.market.series[0]);
  std::vector<double> sq, absr;
  for (double v : r0) sq.push_back(v * v), absr.push_back(std::fabs(v));
  const double ac_sq = autocorr(sq, 1), ac_abs = autocorr(absr, 1), ac_raw = autocorr(r0, 1);
  const double kurt = excess_kurtosis(r0);
  MESSAGE("acf(r^2,1) " << ac_sq << ", acf(|r|,1) " << ac_abs << ", acf(r,1) " << ac_raw << ", excess kurtosis "
                        << kurt);
  CHECK(ac_sq > 0.1);  // volatility clusters
  CHECK(ac_abs > 0.15);
  CHECK(std::fabs(ac_raw) < 0.1);  // returns themselves nearly uncorrelated
  CHECK(kurt > 1.0);               // fat tails (a normal has 0)

  const auto r1 = log_returns(sim.market.series[2]);  // the other asset, same exchange
  const double rho = correlation(r0, r1);
  MESSAGE("cross-asset return correlation " << rho);
  CHECK(rho > 0.2);
  CHECK(rho < 0.7);

  std::vector<double> vol;
  for (std::size_t t = 1; t < sim.market.series[0].volume.size(); ++t)
    vol.push_back(std::log(sim.market.series[0].volume[t]));
  CHECK(correlation(vol, absr) > 0.2);  // volume tied to volatility

  // Exchanges differ by lead-lag and transient spreads: prices close but not equal.
  const Series& x0 = sim.market.series[0];
  const Series& x1 = sim.market.series[1];
  double max_spread = 0, mean_abs = 0;
  for (std::int64_t t = 0; t < x0.size(); ++t) {
    const double d = std::fabs(std::log(x0.close[static_cast<std::size_t>(t)] / x1.close[static_cast<std::size_t>(t)]));
    max_spread = std::max(max_spread, d);
    mean_abs += d;
  }
  mean_abs /= static_cast<double>(x0.size());
  CHECK(mean_abs > 1e-4);
  CHECK(mean_abs < 0.02);
  // The lagging exchange's return correlates with the leader's previous return.
  const auto l0 = log_returns(x0), l1 = log_returns(x1);
  std::vector<double> lead(l0.begin(), l0.end() - 1), follow(l1.begin() + 1, l1.end());
  CHECK(correlation(lead, follow) > 0.1);
}

TEST_CASE("simulator: writes CSV that the loader reads back") {
  SimulatorConfig c;
  c.bars = 300;
  c.assets = 1;
  c.exchanges = 2;
  const SimulatedMarket sim = simulate_market(c);
  const auto dir = std::filesystem::temp_directory_path() / "metatape_sim_csv";
  const auto paths = write_market_csv(sim.market, dir.string());
  REQUIRE(paths.size() == 2);
  const LoadResult back = load_series(paths[1]);
  CHECK(back.series.size() == 300);
  CHECK(back.series.exchange == "simx1");
  CHECK(back.series.symbol == "SIM0/USD");
  CHECK(back.series.interval_ms == c.interval_ms);
  for (std::int64_t t = 0; t < 300; t += 37)
    CHECK(back.series.close[static_cast<std::size_t>(t)] ==
          doctest::Approx(sim.market.series[1].close[static_cast<std::size_t>(t)]).epsilon(1e-12));
  const Market both = load_market(paths);
  CHECK(both.series.size() == 2);
  CHECK(both.rows() == 300);
}

TEST_CASE("simulator: cross pairs close a triangle up to a small AR(1) deviation") {
  SimulatorConfig c;
  c.bars = 2000;
  c.assets = 3;
  c.exchanges = 2;
  c.seed = 12;
  c.cross_pairs = true;
  const Market m = simulate_market(c).market;
  REQUIRE(m.series.size() == 3 * 2 + 2 * 2);
  CHECK(m.series[6].symbol == "SIM1/SIM0");
  CHECK(m.series[6].exchange == "simx0");
  CHECK(m.series[9].symbol == "SIM2/SIM0");
  CHECK(m.series[9].exchange == "simx1");
  for (const Series& s : m.series) s.check();
  // d = log SIM1/USD - log SIM1/SIM0 - log SIM0/USD on simx0: mean ~ 0, stdev ~ cross_vol, lag-1
  // autocorrelation ~ cross_persistence.
  std::vector<double> d;
  for (std::int64_t t = 0; t < m.rows(); ++t) {
    const auto i = static_cast<std::size_t>(t);
    d.push_back(std::log(m.series[2].close[i]) - std::log(m.series[6].close[i]) - std::log(m.series[0].close[i]));
  }
  double mean = 0, var = 0, cov = 0;
  for (double v : d) mean += v;
  mean /= static_cast<double>(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) {
    var += (d[i] - mean) * (d[i] - mean);
    if (i > 0) cov += (d[i] - mean) * (d[i - 1] - mean);
  }
  CHECK(std::abs(mean) < 3e-4);
  CHECK(std::sqrt(var / static_cast<double>(d.size())) == doctest::Approx(c.cross_vol).epsilon(0.1));
  CHECK(cov / var == doctest::Approx(c.cross_persistence).epsilon(0.15));
  c.cross_persistence = 1.0;
  CHECK_THROWS_WITH_AS(simulate_market(c), doctest::Contains("cross_persistence"), std::exception);
}
