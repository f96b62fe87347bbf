// Baselines a skilled learner must beat (the strongest simple predictor of each family). Each is an
// eval::Method: is_baseline() is true, uses_steps() is false (the same outputs for every step count),
// and predict() never reads the episode's query labels.
//
// Output conventions (what eval/scoring.cpp reads), row-major (query rows, family.outputs):
//   classification: log-probabilities: every probability floored at 1e-6, renormalised, then log, so
//     the outputs are finite and their row softmax is the probabilities;
//   regression (risk): predicted log volatility per bar, the unit of the risk family's y
//     (tasks/families.h: y = log of the forward realised volatility per bar over bars t+1..t+h, with
//     the volatility floored at 1e-6);
//   portfolio: log(weights), weights floored at 1e-9, so the row softmax gives the long-only weights.
//
// Notation: at decision row t only bars 0..t are read (t is the bar whose close is the decision
// time). r_k = log(close_k / close_{k-1}) is the log return of bar k (k >= 1). "Fit tasks" are
// options.fit_tasks meta-training tasks drawn once, at construction, from family.train_batch with
// Generator(options.seed), in chunks of at most 256; pass the family source itself, not one wrapped
// by with_support_classes_only (whose labels are renumbered per task).
//
// Classification families (price_direction, market_regime, arbitrage, triangular_arbitrage, risk with
// var_exceedance):
//   prior        knows: the fit tasks' labels (support and query rows). Outputs, for every query row,
//                p_c = (n_c + 1) / (N + C): the meta-training class frequencies, add-one smoothed.
//   majority     knows: the episode's support labels. p_c = (n_c + 1) / (n + C) over the support
//                set, the same for every query row; its argmax is the support majority (ties: the
//                lowest class id), i.e. the former zero_skill baseline.
//   persistence  knows: the episode's last support label l (the most recent label known at the
//                first query row: embargo >= horizon) and the fit tasks. Outputs P(query label = c |
//                last support label = l), counted over (last support label, query label) pairs of
//                the fit tasks, add-one smoothed: (n_lc + 1) / (n_l + C); the same for every row.
// arbitrage and triangular_arbitrage (market sources only) add
//   threshold_rule  "the spread now exceeds the fees plus the margin": at query row t the rule fires
//                when |d(t)| > margin + sum of the series' fee_rate, d being the families' own log
//                deviation (tasks::arbitrage_deviation: log close_a - log close_b, or log XQ - log XB -
//                log BQ) at bar t only; margin = the family's FamilyConfig::arbitrage_margin. Outputs
//                P(label = 1 | rule fires) or P(label = 1 | rule quiet), counted over every decision
//                row (support and query) of the fit tasks, add-one smoothed: (n_f1 + 1) / (n_f + 2).
//                The fit tasks are placed on the market axis by their series symbols and decision
//                times.
//
// Risk (regression):
//   support_mean  knows: the episode's support targets; outputs their mean (per output column).
//   ewma          knows: the asset's closes up to bar t (market sources only). RiskMetrics EWMA of
//                 squared log returns (zero mean): over the returns k = a..t, a = max(1, t -
//                 ewma_window + 1), the variance is seeded with the mean of r_k^2 over the first
//                 min(ewma_seed_returns, t - a + 1) of them and then updated,
//                 s2 = lambda * s2 + (1 - lambda) * r_k^2, for each later k through t. Outputs
//                 0.5 * log(max(s2, 1e-12)) = log(max(sigma, 1e-6)).
//   har_rv        knows: bars 0..t of the asset and a least-squares fit on the train split (market
//                 sources only). HAR-RV (Corsi 2009) in logs:
//                   y_t = b0 + b_d log RV_d(t) + b_w log RV_w(t) + b_m log RV_m(t),
//                 RV_w(t) = sqrt(mean of r_k^2 over the w returns k = t-w+1..t), floored at 1e-6
//                 like y; windows (har_windows) one day, one week and 30 days of bars from the
//                 market interval (1h: 24, 168, 720; 1d: 1, 7, 30), each >= 1 bar and > the previous
//                 one. A window longer than the returns before t is clipped to the t returns
//                 available. y is the family's target exactly (log max(forward vol over t+1..t+h,
//                 1e-6)). Ordinary least squares, ONCE per family source and horizon, pooled over the
//                 series the fit tasks use (hold-out symbols never appear there), on every train row
//                 t with t >= the month window (full windows) and t + h < the train split's end (the
//                 label inside the split); only bars before the split's end are read. When fewer than
//                 har_min_rows such rows exist (a short market), every train row from the split's
//                 start is used with clipped windows (HarModel::clipped). Collinear regressors
//                 (e.g. identical clipped windows) are dropped (coefficient 0).
//
// Portfolio:
//   equal_weight  knows nothing: 1/N.
//   min_variance  knows: the assets' closes up to bar t (market sources only). The sample covariance
//                 (mean-centred, divisor L - 1) of the simple returns of the L = min(
//                 min_variance_periods, floor(t / p)) rebalance periods ending at t, p = the
//                 rebalance period in bars (period k: close(t - k p) / close(t - (k+1) p) - 1), shrunk
//                 toward its diagonal with the fixed intensity delta = min_variance_shrinkage:
//                 (1 - delta) S + delta diag(S). Long-only minimum variance, min w' S w subject to
//                 w >= 0 and sum w = 1, by accelerated projected gradient onto the simplex, then
//                 polished by solving the equality-constrained problem on the assets it kept. With
//                 L < 2 (no covariance yet) the weights are 1/N. Trading costs are charged by the
//                 scorer (eval::portfolio_metrics), the same for every method.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "eval/episodes.h"
#include "eval/methods.h"
#include "tasks/series.h"

namespace metatape::eval {

struct BaselineOptions {
  std::uint64_t seed = 1;                  // Generator(seed) draws the fit tasks
  std::int64_t fit_tasks = 2000;           // meta-training tasks behind prior, persistence, threshold_rule
  double ewma_lambda = 0.94;               // RiskMetrics decay, in (0, 1)
  std::int64_t ewma_window = 250;          // returns the EWMA recursion runs over, ending at bar t
  std::int64_t ewma_seed_returns = 20;     // the first of them, averaged, seed the variance
  std::int64_t har_min_rows = 100;         // fewer full-window train rows: HAR windows are clipped
  std::int64_t min_variance_periods = 60;  // trailing rebalance periods of the covariance (>= 2)
  double min_variance_shrinkage = 0.2;     // intensity toward the diagonal, in [0, 1]
};

// The family's baselines in a fixed order, fitted at construction:
//   classification: prior, majority, persistence [, threshold_rule for arbitrage families];
//   regression: support_mean [, ewma, har_rv for the risk family];
//   portfolio: equal_weight [, min_variance].
// The bracketed ones need the market: a synthetic source (family.market == nullptr) gets the others.
// Throws naming the problem when options are out of range or the source cannot be fitted (no
// train_batch, a fit task not on the market axis, no train row for HAR).
std::vector<std::unique_ptr<Method>> make_family_baselines(const FamilySource& family,
                                                           const BaselineOptions& options = {});

// ---- the pieces, exposed for tests -------------------------------------------------------------

// Floors every probability at 1e-6, renormalises and takes the log.
std::vector<double> log_probabilities(std::vector<double> probabilities);

// The ewma baseline's prediction at bar t (see above); needs 1 <= t < close.size().
double ewma_log_volatility(const std::vector<double>& close, std::int64_t t, double lambda, std::int64_t window,
                           std::int64_t seed_returns);

struct HarWindows {
  std::int64_t day = 24, week = 168, month = 720;
};
// One day, 7 days and 30 days of bars at this bar length (each >= 1 bar, strictly increasing).
// Throws when interval_ms <= 0.
HarWindows har_windows(std::int64_t interval_ms);
// log(max(sqrt(mean r_k^2 over k = t - w' + 1 .. t), 1e-6)), w' = min(window, t); needs t >= 1.
double trailing_log_volatility(const std::vector<double>& close, std::int64_t t, std::int64_t window);

struct HarModel {
  double intercept = 0.0, day = 0.0, week = 0.0, month = 0.0;
  HarWindows windows;
  std::int64_t horizon = 0;
  std::int64_t rows = 0;  // train rows the fit used (pooled over series)
  bool clipped = false;   // true: too few full-window rows, every train row used with clipped windows
  double predict(const std::vector<double>& close, std::int64_t t) const;
};
// OLS fit of HAR-RV on rows [train.first, train.second) of `series` (pooled), as described above.
HarModel fit_har(const tasks::Market& market, const std::vector<int>& series,
                 std::pair<std::int64_t, std::int64_t> train, std::int64_t horizon, const HarWindows& windows,
                 std::int64_t min_rows);

// The shrunk trailing covariance (n x n row-major) of the min_variance baseline at bar t, and the
// number L of periods it used (0 when L < 2: the covariance is then empty).
std::vector<double> trailing_period_covariance(const tasks::Market& market, const std::vector<int>& series,
                                               std::int64_t t, std::int64_t period, std::int64_t periods,
                                               double shrinkage, std::int64_t* used = nullptr);
// argmin w' cov w over w >= 0, sum w = 1 (cov n x n row-major, symmetric positive semi-definite).
std::vector<double> long_only_min_variance(const std::vector<double>& covariance, std::int64_t n);

}  // namespace metatape::eval
