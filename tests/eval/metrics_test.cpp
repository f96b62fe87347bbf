#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/tensor.h"
#include "eval/metrics.h"
#include "eval/scoring.h"
#include "kernels/error.h"

using namespace metatape;
using namespace metatape::eval;

TEST_CASE("classification metrics against hand-computed values") {
  // Confusion [[1,1,0],[0,2,0],[1,0,1]]: recalls 1/2, 1, 1/2; F1 1/2, 4/5, 2/3.
  const ClassificationMetrics m = classification_metrics({0, 0, 1, 1, 2, 2}, {0, 1, 1, 1, 0, 2}, 3);
  CHECK(m.accuracy == doctest::Approx(4.0 / 6.0));
  CHECK(m.balanced_accuracy == doctest::Approx(2.0 / 3.0));
  CHECK(m.macro_f1 == doctest::Approx((0.5 + 0.8 + 2.0 / 3.0) / 3.0));
  CHECK(m.confusion == std::vector<std::vector<std::int64_t>>{{1, 1, 0}, {0, 2, 0}, {1, 0, 1}});
  // Majority-class predictions on an imbalanced set: accuracy looks good, balanced accuracy does not.
  // Named vectors: GCC 12.2 with -march=native (AVX-512) miscompiles two adjacent braced int64
  // temporaries here (the first arrives as {1, 1, 1, 1}); see the report of issue 6.
  const std::vector<std::int64_t> maj_truth{1, 1, 1, 0};
  const std::vector<std::int64_t> maj_pred(4, 1);
  const ClassificationMetrics maj = classification_metrics(maj_truth, maj_pred, 2);
  CHECK(maj.accuracy == doctest::Approx(0.75));
  CHECK(maj.balanced_accuracy == doctest::Approx(0.5));
  CHECK(maj.macro_f1 == doctest::Approx((0.0 + 6.0 / 7.0) / 2.0));
  CHECK_THROWS_WITH_AS(classification_metrics({0, 3}, {0, 1}, 3), doctest::Contains("outside [0, 3)"), Error);
  CHECK_THROWS_WITH_AS(classification_metrics({0}, {0, 1}, 3), doctest::Contains("differ in length"), Error);
  CHECK(argmax_rows({0.1, 0.7, 0.2, 0.5, 0.5, 0.0}, 3) == std::vector<std::int64_t>{1, 0});
}

TEST_CASE("detection metrics: precision, recall, F1, precision at a false-alarm rate, PR-AUC") {
  const std::vector<std::int64_t> truth{1, 0, 1, 0, 0, 1};
  const std::vector<double> scores{0.9, 0.8, 0.7, 0.4, 0.2, 0.1};
  const DetectionMetrics m = detection_metrics(truth, scores, 0.5, 0.05);
  CHECK(m.positives == 3);
  CHECK(m.precision == doctest::Approx(2.0 / 3.0));
  CHECK(m.recall == doctest::Approx(2.0 / 3.0));
  CHECK(m.f1 == doctest::Approx(2.0 / 3.0));
  CHECK(m.pr_auc == doctest::Approx(13.0 / 18.0));            // 1/3 * 1 + 1/3 * 2/3 + 1/3 * 1/2
  CHECK(m.precision_at_false_alarm == doctest::Approx(1.0));  // only the top row has no false alarm
  CHECK(detection_metrics(truth, scores, 0.5, 0.34).precision_at_false_alarm == doctest::Approx(2.0 / 3.0));
  const DetectionMetrics none = detection_metrics({0, 0}, {0.9, 0.1}, 0.5, 0.05);
  CHECK(none.recall == 0.0);
  CHECK(none.pr_auc == 0.0);
  CHECK_THROWS_WITH_AS(detection_metrics({2}, {0.1}), doctest::Contains("must be 0 or 1"), Error);
}

TEST_CASE("trading simulation with fees and slippage against hand-computed values") {
  // cost 0.0015 per unit of position change. Net: 0.01 - 0.0015, -0.02, 0.01 - 0.003, -0.0015.
  TradingConfig config;
  config.periods_per_year = 1.0;
  const std::vector<double> pos{1, 1, -1, 0}, ret{0.01, -0.02, -0.01, 0.05};
  const TradingMetrics m = simulate_trading(pos, ret, config);
  CHECK(m.periods == 4);
  CHECK(m.total_return == doctest::Approx(1.0085 * 0.98 * 1.007 * 0.9985 - 1.0));
  CHECK(m.max_drawdown == doctest::Approx(0.02));
  CHECK(m.hit_rate == doctest::Approx(2.0 / 3.0));
  CHECK(m.turnover == doctest::Approx(1.0));  // (1 + 0 + 2 + 1 + exit 0) / 4
  CHECK(m.sharpe == doctest::Approx(-0.0015 / std::sqrt(5.145e-4 / 3.0)));
  CHECK(m.sortino == doctest::Approx(-0.0015 / std::sqrt(4.0225e-4 / 4.0)));
  // Buy and hold pays entry and exit only.
  const std::vector<double> net = net_returns({1, 1}, {0.0, 0.0}, config);
  CHECK(net[0] == doctest::Approx(-0.0015));
  CHECK(net[1] == doctest::Approx(-0.0015));
  CHECK(direction_positions({0, 1, 2}, 3) == std::vector<double>{-1, 0, 1});
  CHECK(direction_positions({0, 1}, 2) == std::vector<double>{-1, 1});
  CHECK_THROWS_WITH_AS(simulate_trading({2.0}, {0.1}), doctest::Contains("must lie in [-1, 1]"), Error);
  CHECK_THROWS_WITH_AS(direction_positions({0}, 4), doctest::Contains("2 (down, up) or 3"), Error);
  // A flat position: no trades, Sharpe and Sortino defined as 0 rather than NaN.
  const TradingMetrics flat = simulate_trading({0, 0, 0}, {0.1, -0.1, 0.2});
  CHECK(flat.sharpe == 0.0);
  CHECK(flat.sortino == 0.0);
  CHECK(flat.hit_rate == 0.0);
}

TEST_CASE("portfolio metrics against equal weight") {
  TradingConfig free;
  free.fee_rate = 0.0;
  free.slippage_rate = 0.0;
  free.periods_per_year = 1.0;
  const PortfolioMetrics p = portfolio_metrics({1, 0, 0.5, 0.5}, {0.1, -0.1, 0.02, 0.04}, 2, free);
  CHECK(p.total_return == doctest::Approx(1.1 * 1.03 - 1.0));
  CHECK(p.equal_weight_return == doctest::Approx(0.03));
  CHECK(p.volatility == doctest::Approx(std::sqrt((0.035 * 0.035 * 2))));
  CHECK(p.sharpe == doctest::Approx(0.065 / std::sqrt(0.035 * 0.035 * 2)));
  CHECK(p.max_drawdown == 0.0);
  // Turnover: entry 1 (from cash), rebalance |0.5 - 1| + |0.5 - 0| = 1, exit 1; over 2 periods.
  CHECK(p.turnover == doctest::Approx(1.5));
  CHECK(p.equal_weight_turnover == doctest::Approx(1.0));
  CHECK_THROWS_WITH_AS(portfolio_metrics({1, 0, 0}, {0.1, 0.1, 0.1}, 2, free), doctest::Contains("rows of 2"), Error);
  TradingConfig negative = free;
  negative.fee_rate = -0.001;
  CHECK_THROWS_WITH_AS(portfolio_metrics({1, 0}, {0.1, 0.1}, 2, negative), doctest::Contains("must be >= 0"), Error);
}

TEST_CASE("portfolio metrics after fees and slippage on turnover (hand-computed)") {
  TradingConfig costs;  // 0.001 fee + 0.0005 slippage per unit traded
  costs.periods_per_year = 1.0;
  const PortfolioMetrics p = portfolio_metrics({1, 0, 0.5, 0.5}, {0.1, -0.1, 0.02, 0.04}, 2, costs);
  // Period 0: gross 0.1, bought from cash (traded 1): 0.1 - 0.0015 = 0.0985.
  // Period 1: gross 0.03, rebalance 1 + exit 1 (traded 2): 0.03 - 0.003 = 0.027.
  CHECK(p.total_return == doctest::Approx(1.0985 * 1.027 - 1.0));
  CHECK(p.turnover == doctest::Approx(1.5));
  CHECK(p.volatility == doctest::Approx(0.03575 * std::sqrt(2.0)));
  CHECK(p.sharpe == doctest::Approx(0.06275 / (0.03575 * std::sqrt(2.0))));
  // Equal weight pays the entry and the exit only: -0.0015 and 0.03 - 0.0015.
  CHECK(p.equal_weight_return == doctest::Approx(0.9985 * 1.0285 - 1.0));
  CHECK(p.equal_weight_turnover == doctest::Approx(1.0));
  CHECK(p.equal_weight_max_drawdown == doctest::Approx(0.0015));
  // Holding one portfolio costs nothing between periods: only entry and exit are charged.
  const PortfolioMetrics hold = portfolio_metrics({0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, {0, 0, 0, 0, 0, 0}, 2, costs);
  CHECK(hold.total_return == doctest::Approx(0.9985 * 0.9985 - 1.0));
  CHECK(hold.turnover == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("scoring: a portfolio episode is scored after the configured fees, and so is its reference") {
  FamilySource f;
  f.name = "portfolio";
  f.kind = tasks::TaskKind::portfolio;
  f.outputs = 2;
  Episode e;
  e.task.kind = tasks::TaskKind::portfolio;
  e.task.query_x = Tensor::zeros(Shape{2, 1});
  e.task.query_y = Tensor::from_vector(std::vector<double>{0.1, -0.1, 0.02, 0.04}, Shape{2, 2});
  e.periods_per_year = 1.0;
  const std::vector<double> equal_scores(4, 0.0);  // softmax: 1/2, 1/2 in both periods
  TradingConfig costs;                             // 0.001 + 0.0005 on the entry and the exit
  const MetricMap m = score_episode(f, e, equal_scores, costs);
  CHECK(m.at("return") == doctest::Approx(0.9985 * 1.0285 - 1.0));
  CHECK(m.at("turnover") == doctest::Approx(1.0));
  CHECK(reference_strategy(f, e, costs).at("return") == doctest::Approx(0.9985 * 1.0285 - 1.0));
  TradingConfig free;
  free.fee_rate = free.slippage_rate = 0.0;
  CHECK(score_episode(f, e, equal_scores, free).at("return") == doctest::Approx(0.03));
  CHECK(lower_is_better("turnover"));
}

TEST_CASE("risk metrics: MSE, QLIKE, Spearman") {
  const RiskMetrics r = risk_metrics({1, 2, 3}, {1, 3, 2}, 0.0);
  CHECK(r.mse == doctest::Approx(2.0 / 3.0));
  const double q = (9.0 / 4 - std::log(9.0 / 4) - 1) + (4.0 / 9 - std::log(4.0 / 9) - 1);
  CHECK(r.qlike == doctest::Approx(q / 3.0));
  CHECK(r.rank_correlation == doctest::Approx(0.5));
  CHECK(spearman_correlation({1, 2, 2, 4}, {10, 20, 20, 40}) == doctest::Approx(1.0));
  CHECK(spearman_correlation({1, 1, 1}, {1, 2, 3}) == 0.0);
  CHECK_THROWS_WITH_AS(risk_metrics({-1.0}, {1.0}), doctest::Contains("negative volatility"), Error);
}
