// Metrics by task family, on plain host vectors (the benchmark converts tensors once per episode).
//
// Undefined ratios never give NaN: each documents the value it takes instead (usually 0) and the
// structs carry the counts needed to tell "0 because undefined" apart from a real 0.
#pragma once

#include <cstdint>
#include <vector>

namespace metatape::eval {

// ---- classification (price direction, regime) -----------------------------------------------------
struct ClassificationMetrics {
  std::int64_t rows = 0;
  double accuracy = 0.0;
  // Mean recall over the classes present in the truth (sklearn's balanced_accuracy_score).
  double balanced_accuracy = 0.0;
  // Mean F1 over the classes present in the truth or the predictions; a class with no true positive
  // has F1 0 (sklearn's f1_score(average="macro", zero_division=0)).
  double macro_f1 = 0.0;
  // confusion[t][p]: rows with true class t predicted as p; num_classes x num_classes.
  std::vector<std::vector<std::int64_t>> confusion;
};
// Throws when lengths differ, the input is empty or a label is outside [0, num_classes).
ClassificationMetrics classification_metrics(const std::vector<std::int64_t>& truth,
                                             const std::vector<std::int64_t>& predicted, std::int64_t num_classes);

// Proper scoring rules on predicted class probabilities (rows, classes), row-major, rows summing to 1.
//   log_loss = -mean_i log max(p_i[y_i], kProbabilityFloor)   (nats; a row costs at most 13.8)
//   brier    = mean_i sum_c (p_i[c] - [y_i = c])^2             (the multi-class Brier score, in [0, 2])
// The floor keeps one "impossible" row (a metric learner gives absent classes probability 0) from
// making the mean infinite. A constant predictor equal to the true class frequencies minimises both
// among constant predictors, so "beats the prior" is a statement about skill, not class balance.
constexpr double kProbabilityFloor = 1e-6;
struct ProbabilisticMetrics {
  double log_loss = 0.0;
  double brier = 0.0;
};
// Throws when shapes differ, the input is empty, a label is outside [0, num_classes) or a probability
// is negative or not finite.
ProbabilisticMetrics probabilistic_metrics(const std::vector<std::int64_t>& truth,
                                           const std::vector<double>& probabilities, std::int64_t num_classes);

// Row-wise softmax of a (rows, cols) row-major matrix of logits or log-probabilities.
std::vector<double> softmax_rows(const std::vector<double>& logits, std::int64_t cols);

// Row-wise argmax of a (rows, classes) row-major score matrix; ties go to the lowest index.
std::vector<std::int64_t> argmax_rows(const std::vector<double>& scores, std::int64_t classes);

// ---- detection (arbitrage) -------------------------------------------------------------------------
struct DetectionMetrics {
  std::int64_t positives = 0, negatives = 0;  // in the truth
  double precision = 0.0;                     // at the threshold; 0 when nothing is flagged
  double recall = 0.0;                        // at the threshold; 0 when there is no positive
  double f1 = 0.0;                            // 0 when precision + recall is 0
  // Precision when flagging every row scoring >= the lowest threshold whose false-alarm rate
  // (false positives / negatives) stays <= the target; 0 when no such threshold flags anything.
  double precision_at_false_alarm = 0.0;
  double false_alarm_target = 0.0;
  // Average precision (area under the precision-recall curve, step interpolation, as sklearn's
  // average_precision_score); 0 when there is no positive.
  double pr_auc = 0.0;
};
// truth: 0 or 1 per row; scores: higher means "opportunity"; a row is flagged when score >= threshold.
DetectionMetrics detection_metrics(const std::vector<std::int64_t>& truth, const std::vector<double>& scores,
                                   double threshold = 0.5, double false_alarm_target = 0.05);

// ---- trading simulation (price direction) ----------------------------------------------------------
struct TradingConfig {
  double fee_rate = 0.001;           // fraction of traded notional, per unit of position change
  double slippage_rate = 0.0005;     // same units, added to the fee
  double periods_per_year = 8760.0;  // for annualising Sharpe and Sortino (hourly bars: 24 * 365)
};

struct TradingMetrics {
  std::int64_t periods = 0;
  double total_return = 0.0;  // compounded: prod(1 + net_t) - 1
  double sharpe = 0.0;        // mean(net) / sd(net) * sqrt(periods_per_year); 0 when sd is 0
  double sortino = 0.0;       // mean(net) / sqrt(mean(min(net, 0)^2)) * sqrt(ppy); 0 when no loss
  double max_drawdown = 0.0;  // largest fall of the equity curve from its running peak, in [0, 1]
  double hit_rate = 0.0;      // fraction of periods in the market whose gross return was > 0; 0 if none
  double turnover = 0.0;      // sum |position change| (entry and final exit included) / periods
};

// positions[t] in [-1, 1] is held over period t, which earns the asset's simple return returns[t].
// The position starts at 0 and is closed after the last period: costs are
// (fee_rate + slippage_rate) * |positions[t] - positions[t-1]|, charged in period t, plus the exit
// cost charged in the last period.
TradingMetrics simulate_trading(const std::vector<double>& positions, const std::vector<double>& returns,
                                const TradingConfig& config = {});

// Net per-period returns of the same simulation (for portfolio-level metrics and plots).
std::vector<double> net_returns(const std::vector<double>& positions, const std::vector<double>& returns,
                                const TradingConfig& config = {});

// Metrics of a given net return stream (the summary part of simulate_trading).
TradingMetrics returns_metrics(const std::vector<double>& net, double periods_per_year);

// Class predictions of a direction classifier as positions: with 2 classes (down, up) -> -1, +1;
// with 3 classes (down, flat, up) -> -1, 0, +1. Other class counts throw.
std::vector<double> direction_positions(const std::vector<std::int64_t>& predicted, std::int64_t num_classes);

// ---- portfolio -------------------------------------------------------------------------------------
// Every number is after costs: the net return of period t is
//   net_t = sum_j w_t,j * r_t,j - (fee_rate + slippage_rate) * sum_j |w_t,j - w_{t-1},j|,
// with w_{-1} = 0 (the portfolio is bought from cash in the first period) and, in the last period,
// the exit sum_j |w_T,j| charged as well (the same accounting as simulate_trading). Weights are not
// drifted with returns inside a period: row t's weights are the ones traded to at its decision bar.
struct PortfolioMetrics {
  double sharpe = 0.0, total_return = 0.0, volatility = 0.0, max_drawdown = 0.0;  // vol annualised
  // (entry + sum of rebalancing trades + exit) / periods, in units of portfolio value.
  double turnover = 0.0;
  double equal_weight_sharpe = 0.0, equal_weight_return = 0.0;
  double equal_weight_volatility = 0.0, equal_weight_max_drawdown = 0.0, equal_weight_turnover = 0.0;
};
// weights and returns are (rows, assets) row-major; row t's weights earn row t's simple returns.
// config: fee_rate and slippage_rate on turnover, periods_per_year to annualise Sharpe and volatility.
// Throws when the shapes disagree, a value is not finite or a cost rate is negative.
PortfolioMetrics portfolio_metrics(const std::vector<double>& weights, const std::vector<double>& returns,
                                   std::int64_t assets, const TradingConfig& config);

// ---- risk (volatility forecasting) -----------------------------------------------------------------
struct RiskMetrics {
  double mse = 0.0;               // mean((predicted - realised)^2), on the values given
  double qlike = 0.0;             // mean(r / p - log(r / p) - 1) on variances p = predicted^2, r = realised^2
  double rank_correlation = 0.0;  // Spearman's rho (average ranks); 0 when either side is constant
};
// predicted and realised volatilities; both must be positive for QLIKE (throws otherwise, naming the
// row). `floor` is added to both before squaring, to keep QLIKE finite on zero-volatility rows.
RiskMetrics risk_metrics(const std::vector<double>& predicted, const std::vector<double>& realised,
                         double floor = 1e-8);

double spearman_correlation(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace metatape::eval
