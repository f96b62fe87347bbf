// Walk-forward trading on the test split: one stitched out-of-sample equity curve per (family,
// method, asset), for the price_direction and market_regime families.
//
// The walk, per asset (every single-series group of the family), on the family's TEST split rows
// [T0, T1) of the market axis, with S = support_rows(family, shots), stride s, horizon h and
// embargo e (0 = h):
//   - every re-adaptation starts at a decision bar d (the first one at d0, below). Its episode is
//     family.episode_at({series, begin = d - 1 - e - (S - 1) s, S support rows, q query rows, h, e, s}):
//     the S most recent support decision rows whose labels (bars up to s_last + h <= d - 1) are known
//     at d, and query rows d, d + s, ..., d + (q - 1) s. q = ceil(readapt_every / s) (clamped at the
//     end), so the interval between re-adaptations is readapt_every rounded up to a multiple of s.
//     The next re-adaptation is at d + q s.
//   - d0 = max(T0, first row whose support fits after the family's min_begin): the first support
//     window may reach back before T0 (into the validation split): that is past data at d0.
//   - The walk stops at the last decision row q with q + h <= T1 - 1, because the task builder
//     computes every query row's label (bars up to q + h) and must not read beyond the split (the
//     labels are then hidden from the method, see below). The last h bars of the split are not traded.
//   - Only the past reaches the method: query labels are replaced by class 0 and the holding returns
//     cleared before method.predict, so the prediction for decision row q uses the support rows (all
//     before d) and the query row's features (bars 0..q). A non-finite output (a diverged adaptation)
//     makes that block's positions 0; it is counted in `diverged`.
// Positions: probabilities p = softmax(outputs) of each query row (outputs are logits or
// log-probabilities). price_direction: p(BUY) - p(SELL); market_regime: p(bull) - p(bear); both in
// [-1, 1]. The position decided at row q is taken at bar q's close and held for the s bars
// q .. q + s - 1 (never past bar T1 - 2): bar t earns the simple return close[t+1] / close[t] - 1.
// Costs as simulate_trading (eval/metrics.h): (fee_rate + slippage_rate) * |position change| per bar,
// entry from flat at the first bar and the exit to flat charged on the last bar.
//
// Stitching: the per-bar net returns of all blocks form one series; bar t's return is realised over
// bar t + 1, so it is booked on the UTC calendar day of time_ms[t + 1]; a day's return is the
// compounded product of its bars' net returns (days without traded bars do not appear).
// Metrics, computed once on the stitched daily returns (crypto trades every day: annualised with
// sqrt(365)): total return prod(1 + r) - 1; Sharpe mean / sd (n - 1) * sqrt(365); Sortino
// mean / sqrt(mean(min(r, 0)^2)) * sqrt(365) (0 when no day lost); maximum drawdown of the daily
// equity curve; a stationary block-bootstrap percentile interval of the Sharpe ratio (mean block
// length block_length days, 0 = automatic_block_length (Politis-White, eval/sharpe_inference.h);
// `resamples` resamples from a seed derived from config.seed and the series index); the deflated
// Sharpe ratio over the trials (assign_deflated_sharpe).
// Fewer than two days: Sharpe, Sortino, interval and deflated Sharpe are 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/random.h"
#include "eval/episodes.h"
#include "eval/methods.h"
#include "eval/metrics.h"
#include "eval/sharpe_inference.h"
#include "eval/statistics.h"

namespace metatape::eval {

struct WalkForwardConfig {
  bool enabled = true;
  int readapt_every = 24;     // bars between re-adaptations (rounded up to a multiple of the stride)
  int shots = 0;              // 0: the benchmark's middle shots value
  int steps = 1;              // adaptation steps (the benchmark passes its first steps value)
  double block_length = 0.0;  // stationary-bootstrap mean block length in days; 0: Politis-White
  int resamples = 1000;       // bootstrap resamples of the Sharpe interval
  double confidence = 0.95;
  std::uint64_t seed = 1;  // bootstrap seed (the benchmark derives it from its own)
  TradingConfig trading;   // fees and slippage (the benchmark passes its own)
};

struct EquityCurve {
  std::string family, method, asset;  // asset: "BTC/USDT@binance"
  bool baseline = false;
  int series = -1, run = 0, shots = 0, steps = 0;
  std::int64_t readapt_every = 0, adaptations = 0, diverged = 0;
  std::int64_t first_row = 0, last_row = 0;  // first decision bar and last traded bar (market axis)
  // Per traded bar t (position held from close t to close t + 1).
  std::vector<std::int64_t> bar_time_ms;       // open time of bar t
  std::vector<double> positions, bar_returns;  // bar_returns: net of costs
  // Per UTC day.
  std::vector<std::int64_t> day_ms;                     // midnight UTC, unix ms
  std::vector<double> daily_returns, equity, drawdown;  // equity starts at 1 before the first day
  double turnover = 0.0;                                // sum |position change| (entry and final exit included) / bars
  double total_return = 0.0, sharpe = 0.0, sortino = 0.0, max_drawdown = 0.0;  // annualised: sqrt(365)
  double sharpe_daily = 0.0;  // per-day Sharpe (the unit of the deflated Sharpe's inputs)
  Interval sharpe_ci;         // annualised
  double block_length = 0.0;  // used by the bootstrap, days
  int resamples = 0;
  DeflatedSharpe deflated;  // set by assign_deflated_sharpe (trials = 0 until then)
};

// The walk above for one method on every asset of the family, in series order. Throws unless the
// family is price_direction or market_regime on a market source, or when the test split is too short
// for one decision row. The method sees one predict call per re-adaptation, with {config.steps} and
// a generator split from `gen` per call.
std::vector<EquityCurve> walk_forward(const FamilySource& family, Method& method, const WalkForwardConfig& config,
                                      Generator& gen);

// A constant position on the same bars as walk_forward (same first decision bar and last bar per
// asset): buy_and_hold_curve holds 1 throughout (total return = the price ratio with the entry and
// exit costs), flat_curve holds 0 (every return exactly 0). Method names "buy_and_hold" and "flat".
std::vector<EquityCurve> buy_and_hold_curve(const FamilySource& family, const WalkForwardConfig& config);
std::vector<EquityCurve> flat_curve(const FamilySource& family, const WalkForwardConfig& config);

// The position rule: p(BUY) - p(SELL) for price_direction, p(bull) - p(bear) for market_regime, from
// one row of raw outputs (softmax). Exposed for tests.
double position_from_outputs(const std::string& family, const double* outputs, std::int64_t classes);

// Deflated Sharpe for every curve: per (family, asset), the trials' variance is the sample variance
// of the per-day Sharpe ratios of the curves of that group that are trials (every method except
// buy_and_hold and flat), and N = `trials` (the caller's count of learners and configurations tried,
// e.g. methods x runs). Curves with fewer than two days get dsr 0. Idempotent.
void assign_deflated_sharpe(std::vector<EquityCurve>& curves, std::int64_t trials);

// report.json "walk_forward": one object per curve (metrics, interval, deflated Sharpe and the daily
// series: day_ms, daily_return, equity, drawdown; bar series are left out to keep the report small).
nlohmann::json walk_forward_json(const std::vector<EquityCurve>& curves);
// One table per family: method, asset, total return, Sharpe [CI], Sortino, max drawdown, turnover,
// deflated Sharpe. Empty string when there is no curve.
std::string walk_forward_markdown(const std::vector<EquityCurve>& curves);
// equity.csv: family,method,asset,run,day,daily_return,equity,drawdown (day as YYYY-MM-DD UTC).
std::string walk_forward_equity_csv(const std::vector<EquityCurve>& curves);

}  // namespace metatape::eval
