// The built-in market simulator, deterministic by seed. A hidden market regime follows a Markov chain
// over bull / bear / sideways / high-volatility; each asset's log return per bar is
//   r = mu[regime] * beta + sigma_t * z + jump,
// where z is correlated across assets (one common factor with loading sqrt(correlation)), sigma_t^2
// follows GARCH(1,1) scaled by the regime's volatility, and jumps arrive with a small probability.
// Volume rises with |r| / sigma. Each asset is quoted on several exchanges: exchange e sees the
// efficient price with a partial lag (it shows only 1 - lag_fraction[e] of each bar's move in that
// bar, the rest one bar later) plus a transient mean-reverting spread (AR(1)), and has its own fee. Bars are built from sub-steps so high/low are real path extremes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/series.h"

namespace metatape::tasks {

enum class Regime : std::uint8_t { bull = 0, bear = 1, sideways = 2, high_volatility = 3 };
constexpr int kRegimeCount = 4;
const char* regime_name(Regime r);

struct SimulatorConfig {
  std::uint64_t seed = 1;
  int assets = 4;     // symbols "SIM0/USD", "SIM1/USD", ...
  int exchanges = 2;  // "simx0", "simx1", ...
  std::int64_t bars = 4000;
  std::int64_t interval_ms = 3'600'000;       // 1h bars
  std::int64_t start_ms = 1'577'836'800'000;  // 2020-01-01 UTC
  int substeps = 4;                           // path points per bar for high/low

  double correlation = 0.4;           // pairwise correlation of the diffusive shocks
  double regime_persistence = 0.985;  // P(stay) per bar; mean duration 1 / (1 - p) bars
  // Per-bar drift and volatility multipliers by regime (bull, bear, sideways, high_volatility).
  double drift[kRegimeCount] = {6e-4, -6e-4, 0.0, 0.0};
  double vol_scale[kRegimeCount] = {1.0, 1.2, 0.6, 2.5};
  double base_vol = 0.01;                              // unconditional per-bar volatility in a vol_scale = 1 regime
  double garch_alpha = 0.08, garch_beta = 0.90;        // GARCH(1,1); alpha + beta < 1
  double jump_probability = 0.004, jump_scale = 0.04;  // per bar; jump ~ N(0, jump_scale)
  // First-order autocorrelation of the diffusive return: u_t = phi * u_{t-1} + sqrt(1 - phi^2) * s_t
  // (s_t the scaled GARCH shock), so the unconditional variance is unchanged; 0 (the default) gives
  // independent increments. The noise self-test's control regime plants phi = 0.5.
  double return_autocorrelation = 0.0;
  double base_volume = 1000.0, volume_vol_coupling = 1.5;

  // Exchange microstructure: exchange e's log price is x[t] - lag_fraction[e] * r[t] + spread_e[t]
  // (x efficient log price, r its last bar return; missing entries: 0 for e = 0 (the leader), 0.1
  // otherwise), spread ~ AR(1)(spread_persistence) with stationary stdev spread_vol, taker fee
  // fee_rate[e] (missing entries: 0.001).
  std::vector<double> lag_fraction;
  double spread_vol = 0.0006, spread_persistence = 0.8;
  std::vector<double> fee_rate;

  // Cross pairs (for triangular_arbitrage): on every exchange, "SIMa/SIM0" for a >= 1, priced at
  // close(SIMa/USD) / close(SIM0/USD) * exp(d), d ~ AR(1)(cross_persistence) with stationary stdev
  // cross_vol (the cycle SIMa/USD, SIMa/SIM0, SIM0/USD deviates by exactly d); open is the previous
  // bar's price, high/low the larger/smaller of open and close, volume that of SIMa/USD.
  bool cross_pairs = false;
  double cross_vol = 0.002, cross_persistence = 0.5;
};

struct SimulatedMarket {
  Market market;                // series ordered asset-major: asset a on exchange e at a*E+e,
                                // then the cross pairs: SIMa/SIM0 on exchange e at A*E+(a-1)*E+e
  std::vector<Regime> regimes;  // per bar
  std::vector<std::vector<double>> efficient_log_price;  // [asset][bar]
};

// Throws naming the field when the config is invalid (assets < 1, bars < 2, alpha + beta >= 1, ...).
SimulatedMarket simulate_market(const SimulatorConfig& config);

// Writes one CSV per series into `directory` (created if missing), named
// "<exchange>_<BASE>_<QUOTE>-<interval>.csv"; returns the paths. load_series reads them back.
std::vector<std::string> write_market_csv(const Market& market, const std::string& directory);

}  // namespace metatape::tasks
