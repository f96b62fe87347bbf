// The five crypto task families. Each turns a prepared market, a choice of series and a period into a
// few-shot tasks::Task. Row layout of every task (bars of the market's common time axis):
//
//   support decision rows  s_i = begin + i * stride,             i = 0 .. support_size - 1
//   query decision rows    q_j = s_last + 1 + embargo + j*stride, j = 0 .. query_size - 1
//   label of row t         uses bars t+1 .. t+horizon only;   features of row t use bars 0 .. t only
//
// with embargo >= horizon, so the last support label window (s_last, s_last + horizon] ends before the
// first query row, and the last query label window ends inside the period. begin >= feature warmup.
// Task::support_end_ms is the time of s_last, query_begin_ms the time of q_0; hence
// query_begin_ms - support_end_ms >= (horizon + 1) * interval_ms.
//
// Indicator features are normalised with statistics fitted on the support rows only; the same map is
// applied to the query rows. Raw windows (FeatureSet::raw_window) are normalised within each window
// (tasks/raw_window.h) and pass through unchanged. With raw windows every row is (channels, W)
// flattened channel-major: price_direction, market_regime, risk 5 channels; arbitrage and
// triangular_arbitrage 6 (the first series' 5 and the deviation channel); portfolio 5 per asset, in
// the request's asset order. Tensors are f32 (labels of classification tasks i64).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tasks/features.h"
#include "tasks/series.h"
#include "tasks/task.h"

namespace metatape::tasks {

// A market with its features computed once per series.
struct PreparedMarket {
  Market market;
  FeatureConfig feature_config;
  std::vector<FeatureMatrix> features;  // one per market.series
  std::int64_t warmup = 0;

  static std::shared_ptr<const PreparedMarket> make(Market market, const FeatureConfig& config = {});
};

struct TaskRequest {
  // Indices into market.series. price_direction, market_regime, risk: {asset}. arbitrage: two series
  // of the same symbol on different exchanges {primary, other}. triangular_arbitrage: three pairs on
  // one exchange {X/Q, X/B, B/Q} (e.g. ETH/USDT, ETH/BTC, BTC/USDT). portfolio: the assets (distinct
  // symbols, one series each).
  std::vector<int> series;
  std::int64_t begin = 0;  // first support decision row
  std::int64_t support_size = 20;
  std::int64_t query_size = 20;
  std::int64_t horizon = 4;  // label horizon in bars (portfolio: overridden by the rebalance period)
  std::int64_t embargo = 0;  // 0 means "= horizon"; must be >= horizon
  std::int64_t stride = 1;   // bars between decision rows (portfolio: the rebalance period)

  std::int64_t effective_embargo() const { return embargo == 0 ? horizon : embargo; }
  // Rows from `begin` to one past the last bar any label reads.
  std::int64_t span() const;
};

struct FamilyConfig {
  // price_direction: BUY (2) if the forward log return over the horizon > k * sigma * sqrt(h),
  // SELL (0) if < -k * sigma * sqrt(h), else HOLD (1); sigma = trailing realised vol per bar.
  double direction_threshold = 0.5;
  std::int64_t trailing_vol_window = 20;
  // market_regime over the forward window (bars t+1..t+h), with the same trailing sigma:
  // high_volatility (3) if forward vol > high_vol_ratio * sigma; else bull (0) if the forward return
  // > trend_threshold * sigma * sqrt(h), bear (1) if < -trend_threshold * sigma * sqrt(h); else
  // sideways (2). Class ids equal tasks::Regime.
  double regime_trend_threshold = 1.0;
  double regime_high_vol_ratio = 1.5;
  // arbitrage: label 1 if for some bar u in t+1..t+h, |log(close_a(u) / close_b(u))| > fee_a + fee_b +
  // margin. triangular_arbitrage: the same with the cycle deviation log(XQ) - log(XB) - log(BQ) and the
  // three pairs' fees. Features: the first series' features plus 8 deviation features (indicators),
  // or plus one channel d(u) / (fees + margin) over the window's W bars (raw windows).
  double arbitrage_margin = 0.0005;
  // portfolio: assets per task and rebalancing period ("daily", "weekly", or a bar count "12").
  int portfolio_assets = 3;
  std::string rebalance = "daily";
  // risk: y = log of the forward realised volatility (per bar, over t+1..t+h), shape (rows, 1); with
  // var_exceedance, a 2-way task: 1 if the forward h-bar log return < the trailing (window
  // var_window) empirical var_level quantile of h-bar returns.
  bool risk_var_exceedance = false;
  double var_level = 0.05;
  std::int64_t var_window = 250;
};

class TaskFamily {
 public:
  virtual ~TaskFamily() = default;
  virtual std::string name() const = 0;
  virtual TaskKind kind() const = 0;
  virtual std::int64_t num_classes() const { return 0; }
  virtual std::int64_t feature_dim(const PreparedMarket& market) const = 0;
  // Groups of series a request may name, in a fixed order (e.g. every series; every pair of exchanges
  // quoting one symbol; every run of portfolio_assets distinct symbols).
  virtual std::vector<std::vector<int>> candidates(const Market& market) const = 0;
  // The smallest valid `begin`: the feature warmup, or more when labels need a longer trailing window.
  virtual std::int64_t min_begin(const PreparedMarket& market) const { return market.warmup; }
  // The request with family rules applied (portfolio sets stride and horizon to the rebalance
  // period); make_task uses this too.
  virtual TaskRequest normalise(const PreparedMarket& /*market*/, TaskRequest request) const { return request; }
  // Deterministic: same market and request, same task. Throws naming the problem when the request
  // does not fit (rows out of range, embargo < horizon, wrong series count).
  virtual Task make_task(const PreparedMarket& market, const TaskRequest& request) const = 0;
  // The configuration the family labels with (baselines read e.g. arbitrage_margin from it).
  virtual const FamilyConfig& config() const = 0;
};

// The log price deviation the arbitrage families label on, at bar u (one definition, used by the
// families and by eval's threshold-rule baseline). series: {a, b} (arbitrage, one symbol on two
// exchanges): log(close_a(u)) - log(close_b(u)); {XQ, XB, BQ} (triangular_arbitrage):
// log(close_XQ(u)) - log(close_XB(u)) - log(close_BQ(u)). Throws for other series counts.
double arbitrage_deviation(const Market& market, const std::vector<int>& series, std::int64_t u);
// margin + the fee_rate of every series in the group: a row's label is 1 when |deviation| exceeds
// this at some bar of its label window.
double arbitrage_threshold(const Market& market, const std::vector<int>& series, double margin);

// The registry of task families: the one list of their names. make_family, family_names(), the config
// reader's name check, the CLI's --families help and eval's family-specific metrics all read it.
struct FamilyInfo {
  std::string name;
  // The kind with the default FamilyConfig (risk becomes classification with risk_var_exceedance;
  // TaskFamily::kind() gives the configured one).
  TaskKind kind = TaskKind::classification;
  std::string help;  // one line, for --help and error messages
  // Labels are rare events to detect (binary: 1 = an opportunity in the label window): eval adds
  // detection metrics (precision, recall, PR-AUC) and the threshold-rule baseline.
  bool detection = false;
  // Labels are trade directions on the first series (SELL 0, HOLD 1, BUY 2): eval simulates trading
  // the predicted directions against the query returns, with buy-and-hold as the reference.
  bool trades_direction = false;
  // Regression on the log of forward realised volatility: eval adds the volatility-forecast baselines
  // (EWMA, HAR-RV).
  bool forecasts_volatility = false;
  std::unique_ptr<TaskFamily> (*make)(const FamilyConfig& config) = nullptr;
};

// Every family, in a fixed order: price_direction, market_regime, arbitrage, triangular_arbitrage,
// portfolio, risk.
const std::vector<FamilyInfo>& family_registry();
// The entry named `name`, or nullptr when there is none.
const FamilyInfo* find_family(const std::string& name);
// The entry named `name`; throws listing the names otherwise.
const FamilyInfo& family_info(const std::string& name);
// The registry's names, in its order; joined with `separator` by family_names_text.
std::vector<std::string> family_names();
std::string family_names_text(const std::string& separator = ", ");

// family_info(name).make(config): throws listing the names when `name` is unknown.
std::unique_ptr<TaskFamily> make_family(const std::string& name, const FamilyConfig& config = {});

// Difficulty in [0, 1], documented in docs/data.md: 1 - skill of a 5-nearest-neighbour predictor fit
// on the support set and scored on the query set (classification: balanced accuracy rescaled so
// chance = 0; regression and portfolio: R^2 clipped at 0). Higher is harder.
double task_difficulty(const Task& task);

// Quality in [0, 1]: completeness (fraction of bars in the task's span that were in the source, not
// forward filled) times, for classification, class balance (normalised entropy of support labels).
double task_quality(const Task& task, double completeness);

}  // namespace metatape::tasks
