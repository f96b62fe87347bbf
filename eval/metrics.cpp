#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kernels/error.h"

namespace metatape::eval {
namespace {

void check_lengths(std::size_t a, std::size_t b, const char* who, const char* what) {
  if (a != b) {
    fail(std::string(who) + ": " + what + " differ in length (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
  }
  if (a == 0) fail(std::string(who) + ": no rows to score");
}

void check_finite(const std::vector<double>& v, const char* who, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      fail(std::string(who) + ": " + what + "[" + std::to_string(i) + "] is not finite");
    }
  }
}

double safe_ratio(double num, double den) { return den == 0.0 ? 0.0 : num / den; }

std::vector<double> average_ranks(const std::vector<double>& x) {
  const std::size_t n = x.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return x[i] < x[j]; });
  std::vector<double> rank(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && x[order[j + 1]] == x[order[i]]) ++j;
    for (std::size_t k = i; k <= j; ++k) rank[order[k]] = 0.5 * static_cast<double>(i + j) + 1.0;
    i = j + 1;
  }
  return rank;
}

}  // namespace

ClassificationMetrics classification_metrics(const std::vector<std::int64_t>& truth,
                                             const std::vector<std::int64_t>& predicted, std::int64_t num_classes) {
  check_lengths(truth.size(), predicted.size(), "classification_metrics", "truth and predictions");
  if (num_classes < 2) fail("classification_metrics: num_classes must be >= 2, got " + std::to_string(num_classes));
  const auto k = static_cast<std::size_t>(num_classes);
  ClassificationMetrics m;
  m.rows = static_cast<std::int64_t>(truth.size());
  m.confusion.assign(k, std::vector<std::int64_t>(k, 0));
  auto check_label = [&](std::size_t row, std::int64_t label) {
    if (label < 0 || label >= num_classes) {
      fail("classification_metrics: row " + std::to_string(row) + " has label " + std::to_string(label) +
           ", outside [0, " + std::to_string(num_classes) + ")");
    }
  };
  for (std::size_t i = 0; i < truth.size(); ++i) {
    check_label(i, truth[i]);
    check_label(i, predicted[i]);
  }
  for (std::size_t i = 0; i < truth.size(); ++i) {
    ++m.confusion[static_cast<std::size_t>(truth[i])][static_cast<std::size_t>(predicted[i])];
  }
  std::int64_t correct = 0;
  double recall_sum = 0.0, f1_sum = 0.0;
  int present = 0, f1_classes = 0;
  for (std::size_t c = 0; c < k; ++c) {
    const std::int64_t tp = m.confusion[c][c];
    std::int64_t actual = 0, flagged = 0;
    for (std::size_t j = 0; j < k; ++j) {
      actual += m.confusion[c][j];
      flagged += m.confusion[j][c];
    }
    correct += tp;
    if (actual > 0) {
      recall_sum += static_cast<double>(tp) / static_cast<double>(actual);
      ++present;
    }
    if (actual > 0 || flagged > 0) {
      f1_sum += safe_ratio(2.0 * static_cast<double>(tp), static_cast<double>(actual + flagged));
      ++f1_classes;
    }
  }
  m.accuracy = static_cast<double>(correct) / static_cast<double>(m.rows);
  m.balanced_accuracy = recall_sum / present;
  m.macro_f1 = f1_sum / f1_classes;
  return m;
}

ProbabilisticMetrics probabilistic_metrics(const std::vector<std::int64_t>& truth,
                                           const std::vector<double>& probabilities, std::int64_t num_classes) {
  if (num_classes < 2) fail("probabilistic_metrics: num_classes must be >= 2, got " + std::to_string(num_classes));
  const auto k = static_cast<std::size_t>(num_classes);
  check_lengths(truth.size() * k, probabilities.size(), "probabilistic_metrics", "truth x classes and probabilities");
  check_finite(probabilities, "probabilistic_metrics", "probabilities");
  ProbabilisticMetrics m;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const std::int64_t y = truth[i];
    if (y < 0 || y >= num_classes) {
      fail("probabilistic_metrics: row " + std::to_string(i) + " has label " + std::to_string(y) + ", outside [0, " +
           std::to_string(num_classes) + ")");
    }
    const double* p = probabilities.data() + i * k;
    for (std::size_t c = 0; c < k; ++c) {
      if (p[c] < 0.0) fail("probabilistic_metrics: row " + std::to_string(i) + " has a negative probability");
      const double target = static_cast<std::size_t>(y) == c ? 1.0 : 0.0;
      m.brier += (p[c] - target) * (p[c] - target);
    }
    m.log_loss -= std::log(std::max(p[static_cast<std::size_t>(y)], kProbabilityFloor));
  }
  const double n = static_cast<double>(truth.size());
  m.log_loss /= n;
  m.brier /= n;
  return m;
}

std::vector<double> softmax_rows(const std::vector<double>& x, std::int64_t cols) {
  if (cols < 1 || x.size() % static_cast<std::size_t>(cols) != 0) {
    fail("softmax_rows: " + std::to_string(x.size()) + " values do not split into rows of " + std::to_string(cols));
  }
  std::vector<double> out(x.size());
  const auto c = static_cast<std::size_t>(cols);
  for (std::size_t r = 0; r < x.size() / c; ++r) {
    const double* in = x.data() + r * c;
    const double m = *std::max_element(in, in + c);
    double sum = 0.0;
    for (std::size_t j = 0; j < c; ++j) sum += (out[r * c + j] = std::exp(in[j] - m));
    for (std::size_t j = 0; j < c; ++j) out[r * c + j] /= sum;
  }
  return out;
}

std::vector<std::int64_t> argmax_rows(const std::vector<double>& scores, std::int64_t classes) {
  if (classes < 1 || scores.size() % static_cast<std::size_t>(classes) != 0) {
    fail("argmax_rows: " + std::to_string(scores.size()) + " scores do not split into rows of " +
         std::to_string(classes) + " classes");
  }
  const std::size_t rows = scores.size() / static_cast<std::size_t>(classes);
  std::vector<std::int64_t> out(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const double* row = scores.data() + r * static_cast<std::size_t>(classes);
    out[r] = std::max_element(row, row + classes) - row;
  }
  return out;
}

DetectionMetrics detection_metrics(const std::vector<std::int64_t>& truth, const std::vector<double>& scores,
                                   double threshold, double false_alarm_target) {
  check_lengths(truth.size(), scores.size(), "detection_metrics", "truth and scores");
  check_finite(scores, "detection_metrics", "scores");
  DetectionMetrics m;
  m.false_alarm_target = false_alarm_target;
  std::int64_t tp = 0, fp = 0;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] != 0 && truth[i] != 1) {
      fail("detection_metrics: row " + std::to_string(i) + " has label " + std::to_string(truth[i]) +
           "; labels must be 0 or 1");
    }
    (truth[i] ? m.positives : m.negatives)++;
    if (scores[i] >= threshold) (truth[i] ? tp : fp)++;
  }
  m.precision = safe_ratio(static_cast<double>(tp), static_cast<double>(tp + fp));
  m.recall = safe_ratio(static_cast<double>(tp), static_cast<double>(m.positives));
  m.f1 = safe_ratio(2.0 * m.precision * m.recall, m.precision + m.recall);

  // Sweep thresholds from the highest score down, one distinct score at a time.
  std::vector<std::size_t> order(truth.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return scores[i] > scores[j]; });
  std::int64_t cum_tp = 0, cum_fp = 0;
  double previous_recall = 0.0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      (truth[order[j]] ? cum_tp : cum_fp)++;
      ++j;
    }
    const double precision = static_cast<double>(cum_tp) / static_cast<double>(cum_tp + cum_fp);
    if (m.positives > 0) {
      const double recall = static_cast<double>(cum_tp) / static_cast<double>(m.positives);
      m.pr_auc += (recall - previous_recall) * precision;
      previous_recall = recall;
    }
    const double false_alarm = safe_ratio(static_cast<double>(cum_fp), static_cast<double>(m.negatives));
    if (false_alarm <= false_alarm_target) m.precision_at_false_alarm = precision;
    i = j;
  }
  return m;
}

std::vector<double> net_returns(const std::vector<double>& positions, const std::vector<double>& returns,
                                const TradingConfig& config) {
  check_lengths(positions.size(), returns.size(), "simulate_trading", "positions and returns");
  check_finite(positions, "simulate_trading", "positions");
  check_finite(returns, "simulate_trading", "returns");
  if (config.fee_rate < 0 || config.slippage_rate < 0) {
    fail("simulate_trading: fee_rate and slippage_rate must be >= 0");
  }
  const double cost = config.fee_rate + config.slippage_rate;
  std::vector<double> net(positions.size());
  double previous = 0.0;
  for (std::size_t t = 0; t < positions.size(); ++t) {
    if (std::abs(positions[t]) > 1.0) {
      fail("simulate_trading: position " + std::to_string(t) + " is " + std::to_string(positions[t]) +
           "; positions must lie in [-1, 1]");
    }
    net[t] = positions[t] * returns[t] - cost * std::abs(positions[t] - previous);
    previous = positions[t];
  }
  net.back() -= cost * std::abs(previous);
  return net;
}

TradingMetrics returns_metrics(const std::vector<double>& net, double periods_per_year) {
  TradingMetrics m;
  m.periods = static_cast<std::int64_t>(net.size());
  if (net.empty()) return m;
  const double n = static_cast<double>(net.size());
  const double mean = std::accumulate(net.begin(), net.end(), 0.0) / n;
  double ss = 0.0, downside = 0.0, equity = 1.0, peak = 1.0;
  for (double r : net) {
    ss += (r - mean) * (r - mean);
    if (r < 0) downside += r * r;
    equity *= 1.0 + r;
    peak = std::max(peak, equity);
    m.max_drawdown = std::max(m.max_drawdown, (peak - equity) / peak);
  }
  const double sd = net.size() > 1 ? std::sqrt(ss / (n - 1.0)) : 0.0;
  const double annual = std::sqrt(periods_per_year);
  m.total_return = equity - 1.0;
  m.sharpe = sd > 0.0 ? mean / sd * annual : 0.0;
  m.sortino = downside > 0.0 ? mean / std::sqrt(downside / n) * annual : 0.0;
  return m;
}

TradingMetrics simulate_trading(const std::vector<double>& positions, const std::vector<double>& returns,
                                const TradingConfig& config) {
  const std::vector<double> net = net_returns(positions, returns, config);
  TradingMetrics m = returns_metrics(net, config.periods_per_year);
  std::int64_t in_market = 0, hits = 0;
  double traded = 0.0, previous = 0.0;
  for (std::size_t t = 0; t < positions.size(); ++t) {
    if (positions[t] != 0.0) {
      ++in_market;
      hits += positions[t] * returns[t] > 0.0;
    }
    traded += std::abs(positions[t] - previous);
    previous = positions[t];
  }
  traded += std::abs(previous);
  m.hit_rate = safe_ratio(static_cast<double>(hits), static_cast<double>(in_market));
  m.turnover = traded / static_cast<double>(positions.size());
  return m;
}

std::vector<double> direction_positions(const std::vector<std::int64_t>& predicted, std::int64_t num_classes) {
  if (num_classes != 2 && num_classes != 3) {
    fail(
        "direction_positions: a direction classifier has 2 (down, up) or 3 (down, flat, up) "
        "classes, got " +
        std::to_string(num_classes));
  }
  std::vector<double> out(predicted.size());
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    if (predicted[i] < 0 || predicted[i] >= num_classes) {
      fail("direction_positions: prediction " + std::to_string(i) + " is class " + std::to_string(predicted[i]) +
           ", outside [0, " + std::to_string(num_classes) + ")");
    }
    out[i] = num_classes == 2 ? (predicted[i] == 0 ? -1.0 : 1.0) : static_cast<double>(predicted[i] - 1);
  }
  return out;
}

PortfolioMetrics portfolio_metrics(const std::vector<double>& weights, const std::vector<double>& returns,
                                   std::int64_t assets, const TradingConfig& config) {
  check_lengths(weights.size(), returns.size(), "portfolio_metrics", "weights and returns");
  check_finite(weights, "portfolio_metrics", "weights");
  check_finite(returns, "portfolio_metrics", "returns");
  if (assets < 1 || returns.size() % static_cast<std::size_t>(assets) != 0) {
    fail("portfolio_metrics: " + std::to_string(returns.size()) + " returns do not split into rows of " +
         std::to_string(assets) + " assets");
  }
  if (config.fee_rate < 0 || config.slippage_rate < 0) {
    fail("portfolio_metrics: fee_rate and slippage_rate must be >= 0");
  }
  const double cost = config.fee_rate + config.slippage_rate;
  const std::size_t rows = returns.size() / static_cast<std::size_t>(assets);
  const auto a = static_cast<std::size_t>(assets);
  const std::vector<double> equal_weights(weights.size(), 1.0 / static_cast<double>(assets));
  // Net returns and turnover of one weight matrix.
  auto run = [&](const std::vector<double>& w, double& turnover) {
    std::vector<double> net(rows, 0.0);
    double traded = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
      double trade = 0.0;
      for (std::size_t j = 0; j < a; ++j) {
        net[r] += w[r * a + j] * returns[r * a + j];
        trade += std::abs(w[r * a + j] - (r == 0 ? 0.0 : w[(r - 1) * a + j]));
      }
      if (r + 1 == rows) {
        for (std::size_t j = 0; j < a; ++j) trade += std::abs(w[r * a + j]);
      }
      net[r] -= cost * trade;
      traded += trade;
    }
    turnover = traded / static_cast<double>(rows);
    return net;
  };
  auto vol = [&](const std::vector<double>& x) {
    if (x.size() < 2) return 0.0;
    const double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
    double ss = 0.0;
    for (double v : x) ss += (v - mean) * (v - mean);
    return std::sqrt(ss / static_cast<double>(x.size() - 1) * config.periods_per_year);
  };
  PortfolioMetrics p;
  const std::vector<double> model = run(weights, p.turnover);
  const std::vector<double> equal = run(equal_weights, p.equal_weight_turnover);
  const TradingMetrics m = returns_metrics(model, config.periods_per_year);
  const TradingMetrics e = returns_metrics(equal, config.periods_per_year);
  p.sharpe = m.sharpe;
  p.total_return = m.total_return;
  p.volatility = vol(model);
  p.max_drawdown = m.max_drawdown;
  p.equal_weight_sharpe = e.sharpe;
  p.equal_weight_return = e.total_return;
  p.equal_weight_volatility = vol(equal);
  p.equal_weight_max_drawdown = e.max_drawdown;
  return p;
}

double spearman_correlation(const std::vector<double>& a, const std::vector<double>& b) {
  check_lengths(a.size(), b.size(), "spearman_correlation", "samples");
  check_finite(a, "spearman_correlation", "a");
  check_finite(b, "spearman_correlation", "b");
  const std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n;
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0.0 && sbb > 0.0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

RiskMetrics risk_metrics(const std::vector<double>& predicted, const std::vector<double>& realised, double floor) {
  check_lengths(predicted.size(), realised.size(), "risk_metrics", "predicted and realised volatility");
  check_finite(predicted, "risk_metrics", "predicted");
  check_finite(realised, "risk_metrics", "realised");
  RiskMetrics m;
  const double n = static_cast<double>(predicted.size());
  for (std::size_t i = 0; i < predicted.size(); ++i) {
    if (predicted[i] < 0.0 || realised[i] < 0.0) {
      fail("risk_metrics: row " + std::to_string(i) + " has a negative volatility (predicted " +
           std::to_string(predicted[i]) + ", realised " + std::to_string(realised[i]) +
           "); predict volatility, not returns");
    }
    const double diff = predicted[i] - realised[i];
    m.mse += diff * diff / n;
    const double p = (predicted[i] + floor) * (predicted[i] + floor);
    const double r = (realised[i] + floor) * (realised[i] + floor);
    m.qlike += (r / p - std::log(r / p) - 1.0) / n;
  }
  m.rank_correlation = spearman_correlation(predicted, realised);
  return m;
}

}  // namespace metatape::eval
