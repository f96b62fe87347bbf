// Scores one episode's query predictions with the metrics of its family (eval/metrics.h).
//
// outputs: the method's raw query outputs, row-major (rows, family.outputs):
//   classification: logits or log-probabilities (argmax = prediction; softmax = probabilities);
//   regression (risk): predicted log volatility (tasks/families.h), scored as volatility exp(.);
//   portfolio: scores, softmax over assets gives the long-only weights.
// Metric names (all "higher is better" unless listed in lower_is_better()):
//   classification: log_loss and brier on softmax(outputs) (proper scoring rules, eval/metrics.h),
//     accuracy, balanced_accuracy, macro_f1 on the argmax;
//   price_direction adds trade_return, trade_sharpe, trade_sortino, trade_max_drawdown,
//     trade_hit_rate, trade_turnover (the predicted signal traded with fees and slippage);
//   arbitrage adds precision, recall, f1, precision_at_far, pr_auc (probability of class 1);
//   regression: mse, qlike, rank_correlation; portfolio: sharpe, return, volatility, max_drawdown.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "eval/episodes.h"
#include "eval/metrics.h"

namespace metatape::eval {

using MetricMap = std::map<std::string, double>;

// The task-family registry's properties (tasks/families.h: FamilyInfo) of the source's family, by its
// name; false for a source whose name is not a registered family (synthetic sources).
// is_detection_family: binary event labels (arbitrage): detection metrics and the threshold rule.
// trades_direction: SELL / HOLD / BUY labels (price_direction): trading metrics and buy-and-hold.
bool is_detection_family(const FamilySource& family);
bool trades_direction(const FamilySource& family);

MetricMap score_episode(const FamilySource& family, const Episode& episode, const std::vector<double>& outputs,
                        const TradingConfig& trading = {});

// The metrics of the family's buy-and-hold (price direction: long every query period) or equal-weight
// (portfolio) reference on this episode; empty for other families.
MetricMap reference_strategy(const FamilySource& family, const Episode& episode, const TradingConfig& trading = {});
// "buy_and_hold", "equal_weight" or "" (no reference strategy for the family).
std::string reference_strategy_name(const FamilySource& family);

// The metric verdicts and paired tests compare, always a proper scoring rule where one exists:
// log_loss (every classification family, arbitrage included: its PR-AUC is reported pooled over a
// cell's test rows, eval/benchmark.h), qlike (risk: volatility forecasts, Patton 2011's robust loss),
// sharpe (portfolio).
std::string primary_metric(const FamilySource& family);
bool lower_is_better(const std::string& metric);

}  // namespace metatape::eval
