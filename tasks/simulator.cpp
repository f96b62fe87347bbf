#include "tasks/simulator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "autograd/random.h"
#include "kernels/error.h"

namespace metatape::tasks {

const char* regime_name(Regime r) {
  switch (r) {
    case Regime::bull:
      return "bull";
    case Regime::bear:
      return "bear";
    case Regime::sideways:
      return "sideways";
    case Regime::high_volatility:
      return "high_volatility";
  }
  return "unknown";
}

namespace {

void check_config(const SimulatorConfig& c) {
  auto bad = [](const std::string& what) { fail("simulate_market: " + what); };
  if (c.assets < 1) bad("assets = " + std::to_string(c.assets) + ", need at least 1");
  if (c.exchanges < 1) bad("exchanges = " + std::to_string(c.exchanges) + ", need at least 1");
  if (c.bars < 2) bad("bars = " + std::to_string(c.bars) + ", need at least 2");
  if (c.interval_ms <= 0) bad("interval_ms must be positive");
  if (c.substeps < 1) bad("substeps must be >= 1");
  if (c.correlation < 0 || c.correlation >= 1) bad("correlation must lie in [0, 1)");
  if (c.regime_persistence < 0 || c.regime_persistence >= 1) bad("regime_persistence must lie in [0, 1)");
  if (c.garch_alpha < 0 || c.garch_beta < 0 || c.garch_alpha + c.garch_beta >= 1)
    bad("garch_alpha + garch_beta = " + std::to_string(c.garch_alpha + c.garch_beta) +
        " must be < 1 (and both >= 0) for a stationary variance");
  if (c.base_vol <= 0) bad("base_vol must be positive");
  if (c.spread_persistence < 0 || c.spread_persistence >= 1) bad("spread_persistence must lie in [0, 1)");
  if (c.cross_vol < 0) bad("cross_vol must be >= 0");
  if (!(c.return_autocorrelation > -1 && c.return_autocorrelation < 1))
    bad("return_autocorrelation must lie in (-1, 1) for a stationary process");
  if (c.cross_persistence < 0 || c.cross_persistence >= 1) bad("cross_persistence must lie in [0, 1)");
}

}  // namespace

SimulatedMarket simulate_market(const SimulatorConfig& config) {
  check_config(config);
  const int A = config.assets, E = config.exchanges, K = config.substeps;
  const std::int64_t T = config.bars;
  Generator gen(config.seed);
  Generator regime_gen = gen.split(), shock_gen = gen.split(), micro_gen = gen.split();

  SimulatedMarket out;
  out.regimes.resize(static_cast<std::size_t>(T));
  Regime reg = static_cast<Regime>(regime_gen.below(kRegimeCount));
  for (std::int64_t t = 0; t < T; ++t) {
    if (t > 0 && regime_gen.uniform() >= config.regime_persistence) {
      const auto other = static_cast<int>(regime_gen.below(kRegimeCount - 1));
      reg = static_cast<Regime>(other >= static_cast<int>(reg) ? other + 1 : other);
    }
    out.regimes[static_cast<std::size_t>(t)] = reg;
  }

  // Efficient paths: [asset][bar * K + i], i = 0..K-1 are the points after sub-step i+1; x0 per asset.
  std::vector<std::vector<double>> path(static_cast<std::size_t>(A),
                                        std::vector<double>(static_cast<std::size_t>(T * K)));
  std::vector<std::vector<double>> ret(static_cast<std::size_t>(A), std::vector<double>(static_cast<std::size_t>(T)));
  std::vector<std::vector<double>> activity(static_cast<std::size_t>(A),
                                            std::vector<double>(static_cast<std::size_t>(T)));
  std::vector<double> x0(static_cast<std::size_t>(A)), h(static_cast<std::size_t>(A)),
      last_e(static_cast<std::size_t>(A), 0.0);
  std::vector<double> last_u(static_cast<std::size_t>(A), 0.0);  // autocorrelated diffusive return
  const double phi = config.return_autocorrelation, innovation = std::sqrt(1 - phi * phi);
  const double omega = config.base_vol * config.base_vol * (1 - config.garch_alpha - config.garch_beta);
  for (int a = 0; a < A; ++a) {
    x0[static_cast<std::size_t>(a)] = std::log(100.0) + shock_gen.uniform(-1.0, 3.0);
    h[static_cast<std::size_t>(a)] = config.base_vol * config.base_vol;
  }
  out.efficient_log_price.assign(static_cast<std::size_t>(A), std::vector<double>(static_cast<std::size_t>(T)));
  const double load = std::sqrt(config.correlation), idio = std::sqrt(1 - config.correlation);
  std::vector<double> sub(static_cast<std::size_t>(K));
  for (std::int64_t t = 0; t < T; ++t) {
    const auto r = static_cast<int>(out.regimes[static_cast<std::size_t>(t)]);
    const double factor = shock_gen.normal();
    for (int a = 0; a < A; ++a) {
      const auto ai = static_cast<std::size_t>(a);
      if (t > 0) h[ai] = omega + config.garch_alpha * last_e[ai] * last_e[ai] + config.garch_beta * h[ai];
      const double z = load * factor + idio * shock_gen.normal();
      const double e = std::sqrt(h[ai]) * z;
      last_e[ai] = e;
      const double sigma = std::sqrt(h[ai]) * config.vol_scale[r];
      double jump = 0;
      if (shock_gen.uniform() < config.jump_probability) jump = config.jump_scale * shock_gen.normal();
      double u = config.vol_scale[r] * e;
      if (phi != 0.0) u = phi * last_u[ai] + innovation * u;
      last_u[ai] = u;
      const double rt = config.drift[r] + u + jump;
      ret[ai][static_cast<std::size_t>(t)] = rt;
      activity[ai][static_cast<std::size_t>(t)] = std::pow(sigma / config.base_vol, config.volume_vol_coupling) *
                                                  (0.5 + std::fabs(rt) / std::max(sigma, 1e-12));
      // Sub-steps: a bridge whose increments sum to rt.
      double mean = 0;
      for (int i = 0; i < K; ++i) mean += (sub[static_cast<std::size_t>(i)] = shock_gen.normal());
      mean /= K;
      const double prev = t == 0 ? x0[ai] : out.efficient_log_price[ai][static_cast<std::size_t>(t - 1)];
      double x = prev;
      for (int i = 0; i < K; ++i) {
        x += rt / K + sigma / std::sqrt(static_cast<double>(K)) * (sub[static_cast<std::size_t>(i)] - mean);
        path[ai][static_cast<std::size_t>(t * K + i)] = x;
      }
      path[ai][static_cast<std::size_t>(t * K + K - 1)] = prev + rt;  // exact despite rounding
      out.efficient_log_price[ai][static_cast<std::size_t>(t)] = prev + rt;
    }
  }

  std::vector<Series> series;
  for (int a = 0; a < A; ++a) {
    const auto ai = static_cast<std::size_t>(a);
    for (int e = 0; e < E; ++e) {
      const auto ei = static_cast<std::size_t>(e);
      const double lag = ei < config.lag_fraction.size() ? config.lag_fraction[ei] : (e == 0 ? 0.0 : 0.1);
      Series s;
      s.symbol = "SIM" + std::to_string(a) + "/USD";
      s.exchange = "simx" + std::to_string(e);
      s.interval_ms = config.interval_ms;
      s.interval = config.interval_ms % 3'600'000 == 0 ? std::to_string(config.interval_ms / 3'600'000) + "h"
                                                       : std::to_string(config.interval_ms / 60'000) + "m";
      if (config.interval_ms % 86'400'000 == 0) s.interval = std::to_string(config.interval_ms / 86'400'000) + "d";
      s.fee_rate = ei < config.fee_rate.size() ? config.fee_rate[ei] : 0.001;
      s.reserve(static_cast<std::size_t>(T));
      const double spread_innov =
          config.spread_vol * std::sqrt(1 - config.spread_persistence * config.spread_persistence);
      double spread = config.spread_vol * micro_gen.normal();
      const double share = 1.0 / (1.0 + e);
      for (std::int64_t t = 0; t < T; ++t) {
        const auto ti = static_cast<std::size_t>(t);
        const double prev_x = t == 0 ? x0[ai] : out.efficient_log_price[ai][ti - 1];
        const double prev_r = t == 0 ? 0.0 : ret[ai][ti - 1];
        const double prev_spread = spread;
        spread = config.spread_persistence * spread + spread_innov * micro_gen.normal();
        auto q = [&](int i, double p) {  // exchange log price at sub-step point i (0 = bar open)
          const double w = static_cast<double>(i) / K;
          return p - lag * ((1 - w) * prev_r + (p - prev_x)) + (1 - w) * prev_spread + w * spread;
        };
        const double open = std::exp(q(0, prev_x));
        double hi = open, lo = open, close = open;
        for (int i = 1; i <= K; ++i) {
          const double v = std::exp(q(i, path[ai][static_cast<std::size_t>(t * K + i - 1)]));
          hi = std::max(hi, v);
          lo = std::min(lo, v);
          close = v;
        }
        const double volume = config.base_volume * share * activity[ai][ti] * std::exp(0.25 * micro_gen.normal());
        s.push_back(config.start_ms + t * config.interval_ms, open, hi, lo, close, volume);
      }
      series.push_back(std::move(s));
    }
  }
  if (config.cross_pairs && A >= 2) {
    Generator cross_gen(config.seed * 0x9E3779B97F4A7C15ULL + 77);
    const double innov = config.cross_vol * std::sqrt(1 - config.cross_persistence * config.cross_persistence);
    for (int a = 1; a < A; ++a) {
      for (int e = 0; e < E; ++e) {
        const Series& num = series[static_cast<std::size_t>(a * E + e)];
        const Series& den = series[static_cast<std::size_t>(e)];
        Series x = num.slice(0, 0);  // the exchange's metadata, no rows
        x.symbol = "SIM" + std::to_string(a) + "/SIM0";
        x.reserve(static_cast<std::size_t>(T));
        double d = config.cross_vol * cross_gen.normal();
        double previous = num.open[0] / den.open[0];
        for (std::int64_t t = 0; t < T; ++t) {
          const auto ti = static_cast<std::size_t>(t);
          d = config.cross_persistence * d + innov * cross_gen.normal();
          const double close = num.close[ti] / den.close[ti] * std::exp(d);
          x.push_back(num.time_ms[ti], previous, std::max(previous, close), std::min(previous, close), close,
                      num.volume[ti]);
          previous = close;
        }
        series.push_back(std::move(x));
      }
    }
  }
  out.market = align(std::move(series), AlignMode::intersect);
  return out;
}

std::vector<std::string> write_market_csv(const Market& market, const std::string& directory) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) fail("write_market_csv: cannot create " + directory + ": " + ec.message());
  std::vector<std::string> paths;
  for (const Series& s : market.series) {
    std::string sym = s.symbol;
    std::replace(sym.begin(), sym.end(), '/', '_');
    const std::string path = directory + "/" + s.exchange + "_" + sym + "-" + s.interval + ".csv";
    write_csv(s, path);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace metatape::tasks
