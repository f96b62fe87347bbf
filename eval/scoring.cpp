#include "eval/scoring.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"
#include "tasks/families.h"

namespace metatape::eval {
namespace {

void add_trading(MetricMap& m, const TradingMetrics& t) {
  m["trade_return"] = t.total_return;
  m["trade_sharpe"] = t.sharpe;
  m["trade_sortino"] = t.sortino;
  m["trade_max_drawdown"] = t.max_drawdown;
  m["trade_hit_rate"] = t.hit_rate;
  m["trade_turnover"] = t.turnover;
}

void add_portfolio(MetricMap& m, const PortfolioMetrics& p) {
  m["sharpe"] = p.sharpe;
  m["return"] = p.total_return;
  m["volatility"] = p.volatility;
  m["max_drawdown"] = p.max_drawdown;
  m["turnover"] = p.turnover;
}

// The episode's trading costs with its annualisation.
TradingConfig with_periods(const TradingConfig& trading, const Episode& episode) {
  TradingConfig t = trading;
  t.periods_per_year = episode.periods_per_year;
  return t;
}

}  // namespace

bool is_detection_family(const FamilySource& family) {
  const tasks::FamilyInfo* info = tasks::find_family(family.name);
  return info && info->detection;
}

bool trades_direction(const FamilySource& family) {
  const tasks::FamilyInfo* info = tasks::find_family(family.name);
  return info && info->trades_direction;
}

MetricMap score_episode(const FamilySource& family, const Episode& episode, const std::vector<double>& outputs,
                        const TradingConfig& trading) {
  const tasks::Task& task = episode.task;
  const std::int64_t rows = task.query_x.dim(0);
  if (static_cast<std::int64_t>(outputs.size()) != rows * family.outputs) {
    fail("benchmark: " + family.name + ": a method produced " + std::to_string(outputs.size()) + " outputs for " +
         std::to_string(rows) + " query rows of width " + std::to_string(family.outputs));
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!std::isfinite(outputs[i])) {
      fail("benchmark: " + family.name + ": a method produced a non-finite output (row " +
           std::to_string(i / static_cast<std::size_t>(family.outputs)) +
           "); lower the learning rates or enable gradient clipping");
    }
  }
  MetricMap m;
  switch (family.kind) {
    case tasks::TaskKind::classification: {
      const auto truth = task.query_y.to_vector<std::int64_t>();
      const auto predicted = argmax_rows(outputs, family.outputs);
      const ClassificationMetrics c = classification_metrics(truth, predicted, family.num_classes);
      const ProbabilisticMetrics pm =
          probabilistic_metrics(truth, softmax_rows(outputs, family.outputs), family.num_classes);
      m["log_loss"] = pm.log_loss;
      m["brier"] = pm.brier;
      m["accuracy"] = c.accuracy;
      m["balanced_accuracy"] = c.balanced_accuracy;
      m["macro_f1"] = c.macro_f1;
      if (trades_direction(family) && !episode.query_returns.empty()) {
        TradingConfig t = trading;
        t.periods_per_year = episode.periods_per_year;
        add_trading(m, simulate_trading(direction_positions(predicted, family.num_classes), episode.query_returns, t));
      }
      if (is_detection_family(family) && family.num_classes == 2) {
        const auto p = softmax_rows(outputs, 2);
        std::vector<double> score(truth.size());
        for (std::size_t r = 0; r < truth.size(); ++r) score[r] = p[2 * r + 1];
        const DetectionMetrics d = detection_metrics(truth, score, 0.5, 0.05);
        m["precision"] = d.precision;
        m["recall"] = d.recall;
        m["f1"] = d.f1;
        m["precision_at_far"] = d.precision_at_false_alarm;
        m["pr_auc"] = d.pr_auc;
      }
      break;
    }
    case tasks::TaskKind::regression: {
      const auto y = task.query_y.to_vector<double>();
      std::vector<double> predicted(outputs.size()), realised(y.size());
      for (std::size_t i = 0; i < outputs.size(); ++i) predicted[i] = std::exp(std::clamp(outputs[i], -50.0, 50.0));
      for (std::size_t i = 0; i < y.size(); ++i) realised[i] = std::exp(y[i]);
      const RiskMetrics r = risk_metrics(predicted, realised);
      m["mse"] = r.mse;
      m["qlike"] = r.qlike;
      m["rank_correlation"] = r.rank_correlation;
      break;
    }
    case tasks::TaskKind::portfolio: {
      const auto weights = softmax_rows(outputs, family.outputs);
      add_portfolio(m, portfolio_metrics(weights, task.query_y.to_vector<double>(), family.outputs,
                                         with_periods(trading, episode)));
      break;
    }
  }
  return m;
}

MetricMap reference_strategy(const FamilySource& family, const Episode& episode, const TradingConfig& trading) {
  MetricMap m;
  if (trades_direction(family) && !episode.query_returns.empty()) {
    TradingConfig t = trading;
    t.periods_per_year = episode.periods_per_year;
    add_trading(m, simulate_trading(std::vector<double>(episode.query_returns.size(), 1.0), episode.query_returns, t));
  } else if (family.kind == tasks::TaskKind::portfolio) {
    const std::int64_t rows = episode.task.query_x.dim(0);
    const std::vector<double> equal(static_cast<std::size_t>(rows * family.outputs),
                                    1.0 / static_cast<double>(family.outputs));
    add_portfolio(m, portfolio_metrics(equal, episode.task.query_y.to_vector<double>(), family.outputs,
                                       with_periods(trading, episode)));
  }
  return m;
}

std::string reference_strategy_name(const FamilySource& family) {
  if (trades_direction(family)) return "buy_and_hold";
  if (family.kind == tasks::TaskKind::portfolio) return "equal_weight";
  return "";
}

std::string primary_metric(const FamilySource& family) {
  switch (family.kind) {
    case tasks::TaskKind::classification:
      return "log_loss";
    case tasks::TaskKind::regression:
      return "qlike";
    case tasks::TaskKind::portfolio:
      return "sharpe";
  }
  return "accuracy";
}

bool lower_is_better(const std::string& metric) {
  return metric == "log_loss" || metric == "brier" || metric == "mse" || metric == "qlike" || metric == "volatility" ||
         metric == "max_drawdown" || metric == "trade_max_drawdown" || metric == "trade_turnover" ||
         metric == "turnover";
}

}  // namespace metatape::eval
