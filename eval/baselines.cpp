#include "eval/baselines.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <string>

#include "kernels/error.h"
#include "tasks/families.h"

namespace metatape::eval {
namespace {

constexpr double kProbabilityFloor = 1e-6;
constexpr double kWeightFloor = 1e-9;
constexpr double kVolFloor = 1e-6;  // the risk family's floor on volatility (tasks/families.cpp)
constexpr std::int64_t kFitChunk = 256;

std::size_t query_count(const Episode& e) {
  return e.task.query_x.defined() ? static_cast<std::size_t>(e.task.query_x.dim(0)) : 0;
}

// One row repeated for every query row.
std::vector<double> tile(const std::vector<double>& row, std::size_t rows) {
  std::vector<double> out;
  out.reserve(row.size() * rows);
  for (std::size_t r = 0; r < rows; ++r) out.insert(out.end(), row.begin(), row.end());
  return out;
}

class Baseline : public Method {
 public:
  explicit Baseline(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  bool is_baseline() const override { return true; }
  bool uses_steps() const override { return false; }
  std::vector<std::vector<double>> predict(const Episode& episode, const std::vector<int>& steps, Generator&) override {
    return std::vector<std::vector<double>>(steps.size(), outputs(episode));
  }

 protected:
  virtual std::vector<double> outputs(const Episode& episode) = 0;
  std::string name_;
};

// The market of a market episode, checked against the task's query rows.
const tasks::Market& market_of(const Episode& e, const std::string& who) {
  if (!e.context.market) {
    fail(who +
         ": the episode has no market context (EpisodeContext.market is null); this baseline "
         "needs episodes from a market source (eval::make_market_sources)");
  }
  if (e.context.query_rows.size() != query_count(e)) {
    fail(who + ": the episode has " + std::to_string(query_count(e)) + " query rows but its context lists " +
         std::to_string(e.context.query_rows.size()) + " decision rows");
  }
  return e.context.market->market;
}

const tasks::Series& series_at(const tasks::Market& m, int s, const std::string& who) {
  if (s < 0 || s >= static_cast<int>(m.series.size())) {
    fail(who + ": series index " + std::to_string(s) + " out of range (" + std::to_string(m.series.size()) +
         " series)");
  }
  return m.series[static_cast<std::size_t>(s)];
}

std::vector<std::int64_t> labels_of(const Tensor& y, std::int64_t classes, const std::string& who) {
  if (!y.defined()) return {};
  std::vector<std::int64_t> v = y.to_vector<std::int64_t>();
  for (std::int64_t c : v) {
    if (c < 0 || c >= classes) {
      fail(who + ": label " + std::to_string(c) + " outside [0, " + std::to_string(classes) + ")");
    }
  }
  return v;
}

// (counts + 1) / (total + C), as log-probabilities.
std::vector<double> smoothed(const std::vector<double>& counts) {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  std::vector<double> p(counts.size());
  for (std::size_t c = 0; c < counts.size(); ++c)
    p[c] = (counts[c] + 1.0) / (total + static_cast<double>(counts.size()));
  return log_probabilities(p);
}

// ---- classification ------------------------------------------------------------------------------

class FixedRowMethod final : public Baseline {
 public:
  FixedRowMethod(std::string name, std::vector<double> row) : Baseline(std::move(name)), row_(std::move(row)) {}

 protected:
  std::vector<double> outputs(const Episode& e) override { return tile(row_, query_count(e)); }

 private:
  std::vector<double> row_;
};

class MajorityMethod final : public Baseline {
 public:
  MajorityMethod(std::string name, std::int64_t classes) : Baseline(std::move(name)), classes_(classes) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    std::vector<double> counts(static_cast<std::size_t>(classes_), 0.0);
    for (std::int64_t y : labels_of(e.task.support_y, classes_, name_)) counts[static_cast<std::size_t>(y)] += 1.0;
    return tile(smoothed(counts), query_count(e));
  }

 private:
  std::int64_t classes_;
};

class PersistenceMethod final : public Baseline {
 public:
  // rows[l]: the log-probabilities of the query label given last support label l.
  PersistenceMethod(std::int64_t classes, std::vector<std::vector<double>> rows)
      : Baseline("persistence"), classes_(classes), rows_(std::move(rows)) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const std::vector<std::int64_t> support = labels_of(e.task.support_y, classes_, name_);
    if (support.empty()) fail("persistence: the episode has no support label to persist");
    return tile(rows_[static_cast<std::size_t>(support.back())], query_count(e));
  }

 private:
  std::int64_t classes_;
  std::vector<std::vector<double>> rows_;
};

class ThresholdRuleMethod final : public Baseline {
 public:
  ThresholdRuleMethod(double margin, std::vector<double> fires, std::vector<double> quiet)
      : Baseline("threshold_rule"), margin_(margin), fires_(std::move(fires)), quiet_(std::move(quiet)) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const tasks::Market& m = market_of(e, name_);
    const std::vector<int>& series = e.context.request.series;
    const double threshold = tasks::arbitrage_threshold(m, series, margin_);
    std::vector<double> out;
    for (std::int64_t t : e.context.query_rows) {
      const bool fired = std::fabs(tasks::arbitrage_deviation(m, series, t)) > threshold;
      const std::vector<double>& row = fired ? fires_ : quiet_;
      out.insert(out.end(), row.begin(), row.end());
    }
    return out;
  }

 private:
  double margin_;
  std::vector<double> fires_, quiet_;  // log-probabilities of labels 0 and 1
};

// ---- regression ------------------------------------------------------------------------------------

class SupportMeanMethod final : public Baseline {
 public:
  SupportMeanMethod(std::string name, std::int64_t outputs) : Baseline(std::move(name)), width_(outputs) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const auto width = static_cast<std::size_t>(width_);
    const std::vector<double> y = e.task.support_y.to_vector<double>();
    if (y.empty() || y.size() % width != 0) {
      fail(name_ + ": the support targets (" + std::to_string(y.size()) + " values) do not form rows of " +
           std::to_string(width_) + " outputs");
    }
    const std::size_t n = y.size() / width;
    std::vector<double> mean(width, 0.0);
    for (std::size_t i = 0; i < y.size(); ++i) mean[i % width] += y[i];
    for (double& v : mean) v /= static_cast<double>(n);
    return tile(mean, query_count(e));
  }

 private:
  std::int64_t width_;
};

class EwmaMethod final : public Baseline {
 public:
  explicit EwmaMethod(const BaselineOptions& o)
      : Baseline("ewma"), lambda_(o.ewma_lambda), window_(o.ewma_window), seed_(o.ewma_seed_returns) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const tasks::Market& m = market_of(e, name_);
    if (e.context.request.series.size() != 1) fail("ewma: a risk episode names one series");
    const auto& close = series_at(m, e.context.request.series[0], name_).close;
    std::vector<double> out;
    for (std::int64_t t : e.context.query_rows) out.push_back(ewma_log_volatility(close, t, lambda_, window_, seed_));
    return out;
  }

 private:
  double lambda_;
  std::int64_t window_, seed_;
};

class HarMethod final : public Baseline {
 public:
  HarMethod(std::shared_ptr<const tasks::PreparedMarket> market, std::vector<int> series,
            std::pair<std::int64_t, std::int64_t> train, std::int64_t horizon, std::int64_t min_rows)
      : Baseline("har_rv"),
        market_(std::move(market)),
        series_(std::move(series)),
        train_(train),
        windows_(har_windows(market_->market.interval_ms())),
        min_rows_(min_rows) {
    model(horizon);
  }

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const tasks::Market& m = market_of(e, name_);
    if (e.context.request.series.size() != 1) fail("har_rv: a risk episode names one series");
    const HarModel& fit = model(e.context.request.horizon);
    const auto& close = series_at(m, e.context.request.series[0], name_).close;
    std::vector<double> out;
    for (std::int64_t t : e.context.query_rows) out.push_back(fit.predict(close, t));
    return out;
  }

 private:
  // One fit per label horizon (a distribution may mix horizons), on first use; the lock makes
  // concurrent predict() calls safe.
  const HarModel& model(std::int64_t horizon) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = fits_.find(horizon);
    if (it == fits_.end()) {
      it = fits_.emplace(horizon, fit_har(market_->market, series_, train_, horizon, windows_, min_rows_)).first;
    }
    return it->second;
  }
  std::shared_ptr<const tasks::PreparedMarket> market_;
  std::vector<int> series_;
  std::pair<std::int64_t, std::int64_t> train_;
  HarWindows windows_;
  std::int64_t min_rows_;
  std::map<std::int64_t, HarModel> fits_;  // std::map: references stay valid as fits are added
  std::mutex mutex_;
};

// ---- portfolio -------------------------------------------------------------------------------------

class EqualWeightMethod final : public Baseline {
 public:
  explicit EqualWeightMethod(std::int64_t assets)
      : Baseline("equal_weight"), row_(static_cast<std::size_t>(assets), std::log(1.0 / static_cast<double>(assets))) {}

 protected:
  std::vector<double> outputs(const Episode& e) override { return tile(row_, query_count(e)); }

 private:
  std::vector<double> row_;
};

class MinVarianceMethod final : public Baseline {
 public:
  MinVarianceMethod(std::int64_t assets, const BaselineOptions& o)
      : Baseline("min_variance"),
        assets_(assets),
        periods_(o.min_variance_periods),
        shrinkage_(o.min_variance_shrinkage) {}

 protected:
  std::vector<double> outputs(const Episode& e) override {
    const tasks::Market& m = market_of(e, name_);
    const tasks::TaskRequest& q = e.context.request;
    if (static_cast<std::int64_t>(q.series.size()) != assets_) {
      fail("min_variance: the episode has " + std::to_string(q.series.size()) + " assets, the family " +
           std::to_string(assets_));
    }
    std::vector<double> out;
    for (std::int64_t t : e.context.query_rows) {
      std::int64_t used = 0;
      const std::vector<double> cov = trailing_period_covariance(m, q.series, t, q.stride, periods_, shrinkage_, &used);
      const std::vector<double> w =
          used >= 2 ? long_only_min_variance(cov, assets_)
                    : std::vector<double>(static_cast<std::size_t>(assets_), 1.0 / static_cast<double>(assets_));
      for (double v : w) out.push_back(std::log(std::max(v, kWeightFloor)));
    }
    return out;
  }

 private:
  std::int64_t assets_, periods_;
  double shrinkage_;
};

// ---- fitting on meta-training tasks ----------------------------------------------------------------

std::int64_t row_at(const tasks::Market& m, std::int64_t ms, const std::string& who) {
  const auto it = std::lower_bound(m.time_ms.begin(), m.time_ms.end(), ms);
  if (it == m.time_ms.end() || *it != ms) {
    fail(who + ": a meta-training task's decision time " + std::to_string(ms) +
         " is not on the market's time axis (the source's train tasks must come from its market)");
  }
  return it - m.time_ms.begin();
}

// n evenly spaced decision rows from the row of begin_ms to the row of end_ms.
std::vector<std::int64_t> rows_between(const tasks::Market& m, std::int64_t begin_ms, std::int64_t end_ms,
                                       std::int64_t n, const std::string& who) {
  const std::int64_t a = row_at(m, begin_ms, who), b = row_at(m, end_ms, who);
  if (n < 1 || (n == 1 && a != b) || (n > 1 && ((b - a) % (n - 1) != 0 || b <= a))) {
    fail(who + ": a meta-training task's " + std::to_string(n) + " rows do not evenly span rows " + std::to_string(a) +
         ".." + std::to_string(b));
  }
  std::vector<std::int64_t> rows;
  for (std::int64_t i = 0; i < n; ++i) rows.push_back(n == 1 ? a : a + i * ((b - a) / (n - 1)));
  return rows;
}

// The market series a task names ("symbol@exchange" each).
std::vector<int> series_of_task(const tasks::Task& task, const tasks::Market& m, const std::string& who) {
  std::vector<int> out;
  for (const std::string& label : task.symbols) {
    const auto at = label.rfind('@');
    const int k = at == std::string::npos ? -1 : m.find(label.substr(0, at), label.substr(at + 1));
    if (k < 0) fail(who + ": a meta-training task names series '" + label + "', which is not in the market");
    out.push_back(k);
  }
  return out;
}

struct FitCounts {
  std::vector<double> prior;             // [class]
  std::vector<double> transition;        // [last support label * C + query label]
  double rule[2][2] = {{0, 0}, {0, 0}};  // [fires][label]
  std::set<int> series;
};

FitCounts count_fit_tasks(const FamilySource& f, const BaselineOptions& o, bool threshold_rule, bool series) {
  const std::string who = f.name + " baselines";
  if (!f.train_batch) fail(who + ": the family source has no train_batch to fit the baselines on");
  const bool classify = f.kind == tasks::TaskKind::classification;
  const auto C = static_cast<std::size_t>(std::max<std::int64_t>(f.num_classes, 0));
  FitCounts counts;
  counts.prior.assign(C, 0.0);
  counts.transition.assign(C * C, 0.0);
  double margin = 0.0;
  if (threshold_rule) margin = f.family->config().arbitrage_margin;
  Generator gen(o.seed);
  std::int64_t seen = 0;
  while (seen < o.fit_tasks) {
    const std::int64_t n = std::min(kFitChunk, o.fit_tasks - seen);
    const tasks::TaskBatch batch = f.train_batch(n, gen);
    if (batch.empty()) fail(who + ": train_batch returned no task");
    for (const tasks::Task& task : batch) {
      if (seen == o.fit_tasks) break;
      ++seen;
      if (series) {
        for (int s : series_of_task(task, f.market->market, who)) counts.series.insert(s);
      }
      if (!classify) continue;
      const auto support = labels_of(task.support_y, f.num_classes, who);
      const auto query = labels_of(task.query_y, f.num_classes, who);
      for (std::int64_t y : support) counts.prior[static_cast<std::size_t>(y)] += 1.0;
      for (std::int64_t y : query) counts.prior[static_cast<std::size_t>(y)] += 1.0;
      if (!support.empty()) {
        for (std::int64_t y : query)
          counts.transition[static_cast<std::size_t>(support.back()) * C + static_cast<std::size_t>(y)] += 1.0;
      }
      if (threshold_rule) {
        const tasks::Market& m = f.market->market;
        const std::vector<int> group = series_of_task(task, m, who);
        const double threshold = tasks::arbitrage_threshold(m, group, margin);
        auto count_rows = [&](const std::vector<std::int64_t>& rows, const std::vector<std::int64_t>& labels) {
          for (std::size_t i = 0; i < rows.size(); ++i) {
            const int fired = std::fabs(tasks::arbitrage_deviation(m, group, rows[i])) > threshold ? 1 : 0;
            counts.rule[fired][labels[i]] += 1.0;
          }
        };
        count_rows(
            rows_between(m, task.support_begin_ms, task.support_end_ms, static_cast<std::int64_t>(support.size()), who),
            support);
        count_rows(
            rows_between(m, task.query_begin_ms, task.query_end_ms, static_cast<std::int64_t>(query.size()), who),
            query);
      }
    }
  }
  return counts;
}

void check_options(const BaselineOptions& o) {
  auto bad = [](const std::string& what) { fail("baselines: " + what); };
  if (o.fit_tasks < 1) bad("fit_tasks must be >= 1, got " + std::to_string(o.fit_tasks));
  if (!(o.ewma_lambda > 0.0 && o.ewma_lambda < 1.0))
    bad("ewma_lambda must lie in (0, 1), got " + std::to_string(o.ewma_lambda));
  if (o.ewma_window < 1 || o.ewma_seed_returns < 1) bad("ewma_window and ewma_seed_returns must be >= 1");
  if (o.har_min_rows < 1) bad("har_min_rows must be >= 1");
  if (o.min_variance_periods < 2) bad("min_variance_periods must be >= 2 (a covariance needs two periods)");
  if (!(o.min_variance_shrinkage >= 0.0 && o.min_variance_shrinkage <= 1.0))
    bad("min_variance_shrinkage must lie in [0, 1]");
}

// Cholesky of the symmetric matrix a (n x n) into l; false when a pivot is <= tol[i].
bool cholesky(const std::vector<double>& a, std::size_t n, std::vector<double>& l, const std::vector<double>& tol) {
  l.assign(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double s = a[i * n + j];
      for (std::size_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      if (i == j) {
        if (!(s > tol[i])) return false;
        l[i * n + i] = std::sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return true;
}

std::vector<double> cholesky_solve(const std::vector<double>& l, std::size_t n, std::vector<double> b) {
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < i; ++k) b[i] -= l[i * n + k] * b[k];
    b[i] /= l[i * n + i];
  }
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t k = i + 1; k < n; ++k) b[i] -= l[k * n + i] * b[k];
    b[i] /= l[i * n + i];
  }
  return b;
}

// Solves the symmetric system a x = b (a: co-moments of centred regressors) on the columns that
// stay well conditioned, in order: a column whose diagonal is <= floor[k] (a constant regressor) or
// whose pivot falls to <= 1e-10 of its diagonal (collinear with the columns kept before it) is
// dropped and gets 0.
std::vector<double> solve_dropping_collinear(const std::vector<double>& a, const std::vector<double>& b,
                                             const std::vector<double>& floor, std::size_t n) {
  std::vector<std::size_t> kept;
  std::vector<double> l;
  for (std::size_t k = 0; k < n; ++k) {
    if (!(a[k * n + k] > floor[k])) continue;
    std::vector<std::size_t> trial = kept;
    trial.push_back(k);
    const std::size_t m = trial.size();
    std::vector<double> sub(m * m), tol(m);
    for (std::size_t i = 0; i < m; ++i) {
      tol[i] = std::max(1e-10 * a[trial[i] * n + trial[i]], floor[trial[i]]);
      for (std::size_t j = 0; j < m; ++j) sub[i * m + j] = a[trial[i] * n + trial[j]];
    }
    if (cholesky(sub, m, l, tol)) kept = trial;
  }
  std::vector<double> x(n, 0.0);
  if (kept.empty()) return x;
  const std::size_t m = kept.size();
  std::vector<double> sub(m * m), rhs(m), tol(m, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    rhs[i] = b[kept[i]];
    for (std::size_t j = 0; j < m; ++j) sub[i * m + j] = a[kept[i] * n + kept[j]];
  }
  cholesky(sub, m, l, tol);
  const std::vector<double> v = cholesky_solve(l, m, rhs);
  for (std::size_t i = 0; i < m; ++i) x[kept[i]] = v[i];
  return x;
}

// Euclidean projection onto the simplex {w >= 0, sum w = 1} (Duchi et al. 2008).
std::vector<double> project_to_simplex(const std::vector<double>& v) {
  std::vector<double> u = v;
  std::sort(u.begin(), u.end(), std::greater<>());
  double cumulative = 0.0, theta = 0.0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    cumulative += u[i];
    const double t = (cumulative - 1.0) / static_cast<double>(i + 1);
    if (u[i] - t > 0.0) theta = t;
  }
  std::vector<double> w(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) w[i] = std::max(v[i] - theta, 0.0);
  return w;
}

}  // namespace

// ---- exposed pieces ---------------------------------------------------------------------------------

std::vector<double> log_probabilities(std::vector<double> p) {
  double total = 0.0;
  for (double& v : p) {
    if (!std::isfinite(v) || v < 0.0) fail("log_probabilities: a probability is negative or not finite");
    v = std::max(v, kProbabilityFloor);
    total += v;
  }
  for (double& v : p) v = std::log(v / total);
  return p;
}

double ewma_log_volatility(const std::vector<double>& close, std::int64_t t, double lambda, std::int64_t window,
                           std::int64_t seed_returns) {
  if (t < 1 || t >= static_cast<std::int64_t>(close.size())) {
    fail("ewma: decision bar " + std::to_string(t) + " needs 1 <= t < " + std::to_string(close.size()) +
         " (one past return at least)");
  }
  auto r2 = [&](std::int64_t k) {
    const double r = std::log(close[static_cast<std::size_t>(k)] / close[static_cast<std::size_t>(k - 1)]);
    return r * r;
  };
  const std::int64_t a = std::max<std::int64_t>(1, t - window + 1);
  const std::int64_t seed = std::min(seed_returns, t - a + 1);
  double s2 = 0.0;
  for (std::int64_t k = a; k < a + seed; ++k) s2 += r2(k);
  s2 /= static_cast<double>(seed);
  for (std::int64_t k = a + seed; k <= t; ++k) s2 = lambda * s2 + (1.0 - lambda) * r2(k);
  return 0.5 * std::log(std::max(s2, kVolFloor * kVolFloor));
}

HarWindows har_windows(std::int64_t interval_ms) {
  if (interval_ms <= 0) {
    fail("har_rv: the market has no bar interval (interval_ms " + std::to_string(interval_ms) +
         "); the HAR windows are a day, a week and a month of bars");
  }
  constexpr double kDayMs = 86'400'000.0;
  auto bars = [&](double days) {
    return std::max<std::int64_t>(1, std::llround(days * kDayMs / static_cast<double>(interval_ms)));
  };
  HarWindows w;
  w.day = bars(1);
  w.week = std::max(bars(7), w.day + 1);
  w.month = std::max(bars(30), w.week + 1);
  return w;
}

double trailing_log_volatility(const std::vector<double>& close, std::int64_t t, std::int64_t window) {
  if (t < 1 || t >= static_cast<std::int64_t>(close.size()) || window < 1) {
    fail("har_rv: trailing volatility at bar " + std::to_string(t) + " over " + std::to_string(window) +
         " bars needs 1 <= t < " + std::to_string(close.size()));
  }
  const std::int64_t w = std::min(window, t);
  double q = 0.0;
  for (std::int64_t k = t - w + 1; k <= t; ++k) {
    const double r = std::log(close[static_cast<std::size_t>(k)] / close[static_cast<std::size_t>(k - 1)]);
    q += r * r;
  }
  return std::log(std::max(std::sqrt(q / static_cast<double>(w)), kVolFloor));
}

double HarModel::predict(const std::vector<double>& close, std::int64_t t) const {
  return intercept + day * trailing_log_volatility(close, t, windows.day) +
         week * trailing_log_volatility(close, t, windows.week) +
         month * trailing_log_volatility(close, t, windows.month);
}

HarModel fit_har(const tasks::Market& market, const std::vector<int>& series,
                 std::pair<std::int64_t, std::int64_t> train, std::int64_t horizon, const HarWindows& windows,
                 std::int64_t min_rows) {
  if (horizon < 1) fail("har_rv: horizon must be >= 1 bar, got " + std::to_string(horizon));
  if (series.empty()) fail("har_rv: no series to fit on (no meta-training task named one)");
  const std::int64_t end = std::min(train.second, market.rows());  // bars >= end are never read
  const std::int64_t last = end - horizon;                         // rows t < last: label inside
  HarModel model;
  model.windows = windows;
  model.horizon = horizon;
  const std::int64_t full =
      static_cast<std::int64_t>(series.size()) * std::max<std::int64_t>(0, last - std::max(train.first, windows.month));
  model.clipped = full < min_rows;
  const std::int64_t first =
      model.clipped ? std::max<std::int64_t>(train.first, 1) : std::max(train.first, windows.month);
  // Running means and co-moments of z = (log RV_d, log RV_w, log RV_m, y) (Welford).
  double mean[4] = {0, 0, 0, 0}, co[4][4] = {};
  std::int64_t n = 0;
  for (int s : series) {
    const auto& close = series_at(market, s, "har_rv").close;
    std::vector<long double> prefix(static_cast<std::size_t>(std::max<std::int64_t>(end, 1)),
                                    0.0L);  // sum r_k^2, k <= i
    for (std::int64_t k = 1; k < end; ++k) {
      const double r = std::log(close[static_cast<std::size_t>(k)] / close[static_cast<std::size_t>(k - 1)]);
      prefix[static_cast<std::size_t>(k)] = prefix[static_cast<std::size_t>(k - 1)] + static_cast<long double>(r) * r;
    }
    auto trailing = [&](std::int64_t t, std::int64_t window) {
      const std::int64_t w = std::min(window, t);
      const long double q = prefix[static_cast<std::size_t>(t)] - prefix[static_cast<std::size_t>(t - w)];
      return std::log(std::max(std::sqrt(static_cast<double>(std::max(q, 0.0L)) / static_cast<double>(w)), kVolFloor));
    };
    for (std::int64_t t = first; t < last; ++t) {
      // The risk family's y exactly (tasks/families.cpp forward_vol).
      double q = 0.0;
      for (std::int64_t k = t + 1; k <= t + horizon; ++k) {
        const double r = std::log(close[static_cast<std::size_t>(k)] / close[static_cast<std::size_t>(k - 1)]);
        q += r * r;
      }
      const double z[4] = {trailing(t, windows.day), trailing(t, windows.week), trailing(t, windows.month),
                           std::log(std::max(std::sqrt(q / static_cast<double>(horizon)), kVolFloor))};
      ++n;
      double delta[4];
      for (int i = 0; i < 4; ++i) {
        delta[i] = z[i] - mean[i];
        mean[i] += delta[i] / static_cast<double>(n);
      }
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) co[i][j] += delta[i] * (z[j] - mean[j]);
    }
  }
  if (n == 0) {
    fail("har_rv: no train row has a label inside the train split (rows [" + std::to_string(train.first) + ", " +
         std::to_string(train.second) + "), horizon " + std::to_string(horizon) + "); use more data or wider splits");
  }
  model.rows = n;
  std::vector<double> sxx(9), sxy(3), floor(3);
  for (int i = 0; i < 3; ++i) {
    sxy[static_cast<std::size_t>(i)] = co[i][3];
    for (int j = 0; j < 3; ++j) sxx[static_cast<std::size_t>(i * 3 + j)] = co[i][j];
    // A regressor whose standard deviation is below 1e-9 of its scale is constant (rounding noise).
    const double scale = 1e-9 * std::max(1.0, std::fabs(mean[i]));
    floor[static_cast<std::size_t>(i)] = static_cast<double>(n) * scale * scale;
  }
  const std::vector<double> beta = solve_dropping_collinear(sxx, sxy, floor, 3);
  model.day = beta[0];
  model.week = beta[1];
  model.month = beta[2];
  model.intercept = mean[3] - beta[0] * mean[0] - beta[1] * mean[1] - beta[2] * mean[2];
  return model;
}

std::vector<double> trailing_period_covariance(const tasks::Market& market, const std::vector<int>& series,
                                               std::int64_t t, std::int64_t period, std::int64_t periods,
                                               double shrinkage, std::int64_t* used) {
  if (period < 1) fail("min_variance: the rebalance period must be >= 1 bar, got " + std::to_string(period));
  if (t < 0 || t >= market.rows()) fail("min_variance: decision bar " + std::to_string(t) + " is outside the market");
  const std::int64_t L = std::min(periods, t / period);
  if (used != nullptr) *used = L >= 2 ? L : 0;
  if (L < 2) return {};
  const std::size_t n = series.size(), l = static_cast<std::size_t>(L);
  std::vector<double> r(l * n), mean(n, 0.0);
  for (std::size_t j = 0; j < n; ++j) {
    const auto& close = series_at(market, series[j], "min_variance").close;
    for (std::size_t k = 0; k < l; ++k) {
      const std::int64_t to = t - static_cast<std::int64_t>(k) * period;
      r[k * n + j] = close[static_cast<std::size_t>(to)] / close[static_cast<std::size_t>(to - period)] - 1.0;
      mean[j] += r[k * n + j] / static_cast<double>(L);
    }
  }
  std::vector<double> cov(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::size_t k = 0; k < l; ++k) s += (r[k * n + i] - mean[i]) * (r[k * n + j] - mean[j]);
      cov[i * n + j] = s / static_cast<double>(L - 1) * (i == j ? 1.0 : 1.0 - shrinkage);
    }
  return cov;
}

std::vector<double> long_only_min_variance(const std::vector<double>& cov, std::int64_t assets) {
  if (assets < 1 || cov.size() != static_cast<std::size_t>(assets * assets)) {
    fail("min_variance: a covariance of " + std::to_string(cov.size()) + " values is not " + std::to_string(assets) +
         " x " + std::to_string(assets));
  }
  for (double v : cov)
    if (!std::isfinite(v)) fail("min_variance: the covariance is not finite");
  const auto n = static_cast<std::size_t>(assets);
  std::vector<double> w(n, 1.0 / static_cast<double>(n));
  double lipschitz = 0.0;  // of the gradient 2 cov w: 2 * max absolute row sum >= 2 * largest eigenvalue
  for (std::size_t i = 0; i < n; ++i) {
    double row = 0.0;
    for (std::size_t j = 0; j < n; ++j) row += std::fabs(cov[i * n + j]);
    lipschitz = std::max(lipschitz, 2.0 * row);
  }
  if (n == 1 || lipschitz == 0.0) return w;
  auto times = [&](const std::vector<double>& x) {
    std::vector<double> y(n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) y[i] += cov[i * n + j] * x[j];
    return y;
  };
  // Accelerated projected gradient (FISTA) on the simplex.
  std::vector<double> y = w;
  double momentum = 1.0;
  for (int iter = 0; iter < 20000; ++iter) {
    const std::vector<double> g = times(y);
    std::vector<double> step(n);
    for (std::size_t i = 0; i < n; ++i) step[i] = y[i] - 2.0 * g[i] / lipschitz;
    const std::vector<double> next = project_to_simplex(step);
    const double next_momentum = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * momentum * momentum));
    double change = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      change = std::max(change, std::fabs(next[i] - w[i]));
      y[i] = next[i] + (momentum - 1.0) / next_momentum * (next[i] - w[i]);
    }
    w = next;
    momentum = next_momentum;
    if (change < 1e-12) break;  // the polish below makes the answer exact
  }
  // Polish: the exact minimiser on the assets kept, when it satisfies the KKT conditions.
  std::vector<std::size_t> active;
  for (std::size_t i = 0; i < n; ++i)
    if (w[i] > 1e-8) active.push_back(i);
  const std::size_t m = active.size();
  std::vector<double> sub(m * m), tol(m, 0.0), l;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < m; ++j) sub[i * m + j] = cov[active[i] * n + active[j]];
  if (!cholesky(sub, m, l, tol)) return w;
  const std::vector<double> v = cholesky_solve(l, m, std::vector<double>(m, 1.0));
  const double total = std::accumulate(v.begin(), v.end(), 0.0);
  if (!(total > 0.0)) return w;
  std::vector<double> exact(n, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    if (v[i] < 0.0) return w;
    exact[active[i]] = v[i] / total;
  }
  const std::vector<double> g = times(exact);
  const double level = 1.0 / total;  // (cov w)_i on the active set
  for (std::size_t i = 0; i < n; ++i) {
    if (exact[i] == 0.0 && g[i] < level * (1.0 - 1e-9)) return w;
  }
  return exact;
}

// ---- the factory ------------------------------------------------------------------------------------

std::vector<std::unique_ptr<Method>> make_family_baselines(const FamilySource& family, const BaselineOptions& options) {
  check_options(options);
  if (family.outputs < 1) fail("baselines: family '" + family.name + "' has no outputs (FamilySource.outputs)");
  std::vector<std::unique_ptr<Method>> out;
  const bool has_market = family.market != nullptr;
  switch (family.kind) {
    case tasks::TaskKind::classification: {
      if (family.num_classes < 2 || family.outputs != family.num_classes) {
        fail("baselines: classification family '" + family.name + "' needs num_classes >= 2 equal to outputs");
      }
      const tasks::FamilyInfo* info = tasks::find_family(family.name);
      const bool rule = has_market && info && info->detection;
      if (rule && (!family.family || family.num_classes != 2)) {
        fail("baselines: " + family.name + " needs its task family (FamilySource.family) and 2 classes");
      }
      const FitCounts counts = count_fit_tasks(family, options, rule, false);
      const auto C = static_cast<std::size_t>(family.num_classes);
      out.push_back(std::make_unique<FixedRowMethod>("prior", smoothed(counts.prior)));
      out.push_back(std::make_unique<MajorityMethod>("majority", family.num_classes));
      std::vector<std::vector<double>> rows;
      for (std::size_t l = 0; l < C; ++l) {
        rows.push_back(
            smoothed(std::vector<double>(counts.transition.begin() + static_cast<std::ptrdiff_t>(l * C),
                                         counts.transition.begin() + static_cast<std::ptrdiff_t>((l + 1) * C))));
      }
      out.push_back(std::make_unique<PersistenceMethod>(family.num_classes, std::move(rows)));
      if (rule) {
        out.push_back(std::make_unique<ThresholdRuleMethod>(family.family->config().arbitrage_margin,
                                                            smoothed({counts.rule[1][0], counts.rule[1][1]}),
                                                            smoothed({counts.rule[0][0], counts.rule[0][1]})));
      }
      break;
    }
    case tasks::TaskKind::regression: {
      out.push_back(std::make_unique<SupportMeanMethod>("support_mean", family.outputs));
      if (const tasks::FamilyInfo* info = tasks::find_family(family.name);
          has_market && info && info->forecasts_volatility) {
        if (family.outputs != 1)
          fail("baselines: the risk family has one output, got " + std::to_string(family.outputs));
        const FitCounts counts = count_fit_tasks(family, options, false, true);
        out.push_back(std::make_unique<EwmaMethod>(options));
        out.push_back(std::make_unique<HarMethod>(family.market,
                                                  std::vector<int>(counts.series.begin(), counts.series.end()),
                                                  family.train_rows, family.horizon, options.har_min_rows));
      }
      break;
    }
    case tasks::TaskKind::portfolio: {
      out.push_back(std::make_unique<EqualWeightMethod>(family.outputs));
      if (has_market) out.push_back(std::make_unique<MinVarianceMethod>(family.outputs, options));
      break;
    }
  }
  return out;
}

}  // namespace metatape::eval
