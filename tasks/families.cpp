#include "tasks/families.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "autograd/registry.h"
#include "kernels/error.h"
#include "tasks/simulator.h"

namespace metatape::tasks {

std::shared_ptr<const PreparedMarket> PreparedMarket::make(Market market, const FeatureConfig& config) {
  auto p = std::make_shared<PreparedMarket>();
  p->feature_config = config;
  p->warmup = config.warmup();
  for (const Series& s : market.series) p->features.push_back(compute_features(s, config));
  p->market = std::move(market);
  return p;
}

std::int64_t TaskRequest::span() const {
  const std::int64_t q_last = begin + (support_size - 1) * stride + 1 + effective_embargo() + (query_size - 1) * stride;
  return q_last + horizon - begin + 1;
}

namespace {

struct Layout {
  std::vector<std::int64_t> support, query;
  std::int64_t last_bar = 0;  // last bar any label reads
};

Layout make_layout(const PreparedMarket& m, const TaskRequest& q, std::int64_t min_begin, const std::string& family) {
  auto bad = [&](const std::string& what) { fail(family + ": " + what); };
  if (q.support_size < 1 || q.query_size < 1) bad("support_size and query_size must be >= 1");
  if (q.horizon < 1) bad("horizon must be >= 1 bar");
  if (q.stride < 1) bad("stride must be >= 1 bar");
  if (q.effective_embargo() < q.horizon)
    bad("embargo " + std::to_string(q.embargo) + " is shorter than the label horizon " + std::to_string(q.horizon) +
        " (support labels would overlap the query period; use embargo >= horizon)");
  if (q.begin < min_begin)
    bad("begin row " + std::to_string(q.begin) + " is before the first usable row " + std::to_string(min_begin) +
        " (feature warmup / trailing label window)");
  Layout l;
  for (std::int64_t i = 0; i < q.support_size; ++i) l.support.push_back(q.begin + i * q.stride);
  const std::int64_t q0 = l.support.back() + 1 + q.effective_embargo();
  for (std::int64_t j = 0; j < q.query_size; ++j) l.query.push_back(q0 + j * q.stride);
  l.last_bar = l.query.back() + q.horizon;
  if (l.last_bar >= m.market.rows())
    bad("the task needs bars up to " + std::to_string(l.last_bar) + " but the market has " +
        std::to_string(m.market.rows()) + " (shorten support/query/horizon or start earlier)");
  for (int s : q.series)
    if (s < 0 || s >= static_cast<int>(m.market.series.size()))
      bad("series index " + std::to_string(s) + " out of range (" + std::to_string(m.market.series.size()) +
          " series)");
  return l;
}

double trailing_vol(const Series& s, std::int64_t t, std::int64_t w) {
  double q = 0;
  std::int64_t n = 0;
  for (std::int64_t k = std::max<std::int64_t>(1, t - w + 1); k <= t; ++k, ++n) {
    const double r = std::log(s.close[static_cast<std::size_t>(k)] / s.close[static_cast<std::size_t>(k - 1)]);
    q += r * r;
  }
  return n > 0 ? std::sqrt(q / static_cast<double>(n)) : 0.0;
}

double forward_return(const Series& s, std::int64_t t, std::int64_t h) {
  return std::log(s.close[static_cast<std::size_t>(t + h)] / s.close[static_cast<std::size_t>(t)]);
}

double forward_vol(const Series& s, std::int64_t t, std::int64_t h) {
  double q = 0;
  for (std::int64_t k = t + 1; k <= t + h; ++k) {
    const double r = std::log(s.close[static_cast<std::size_t>(k)] / s.close[static_cast<std::size_t>(k - 1)]);
    q += r * r;
  }
  return std::sqrt(q / static_cast<double>(h));
}

// Rows of raw features (dim D) for support and query plus labels; normalises on support only.
struct Assembled {
  std::int64_t dim = 0;
  std::vector<double> support_x, query_x;        // row-major
  std::vector<std::int64_t> support_c, query_c;  // classification labels
  std::vector<double> support_y, query_y;        // regression / portfolio targets, row-major
  std::int64_t outputs = 1;
};

Task finish(const PreparedMarket& m, const TaskRequest& q, const Layout& l, Assembled& a, const std::string& family,
            TaskKind kind, std::int64_t num_classes) {
  // Raw windows are normalised per window already (tasks/raw_window.h) and pass through unchanged.
  const bool fit_normalizer = !m.feature_config.is_raw_window();
  Normalizer norm;
  if (fit_normalizer) {
    std::vector<const double*> rows;
    for (std::size_t i = 0; i < l.support.size(); ++i)
      rows.push_back(a.support_x.data() + i * static_cast<std::size_t>(a.dim));
    norm = Normalizer::fit(rows, a.dim);
  }
  auto to_tensor = [&](const std::vector<double>& x, std::int64_t n) {
    std::vector<float> out(static_cast<std::size_t>(n * a.dim));
    if (fit_normalizer)
      for (std::int64_t i = 0; i < n; ++i) norm.apply(x.data() + i * a.dim, out.data() + i * a.dim, a.dim);
    else
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(x[i]);
    return Tensor::from_vector(out, Shape{n, a.dim});
  };
  Task t;
  const auto S = static_cast<std::int64_t>(l.support.size()), Q = static_cast<std::int64_t>(l.query.size());
  t.support_x = to_tensor(a.support_x, S);
  t.query_x = to_tensor(a.query_x, Q);
  if (kind == TaskKind::classification) {
    t.support_y = Tensor::indices(a.support_c);
    t.query_y = Tensor::indices(a.query_c);
  } else {
    t.support_y = Tensor::from_vector(a.support_y, Shape{S, a.outputs});
    t.query_y = Tensor::from_vector(a.query_y, Shape{Q, a.outputs});
  }
  t.kind = kind;
  t.num_classes = num_classes;
  t.family = family;
  for (int s : q.series)
    t.symbols.push_back(m.market.series[static_cast<std::size_t>(s)].symbol + "@" +
                        m.market.series[static_cast<std::size_t>(s)].exchange);
  const auto& time = m.market.time_ms;
  t.support_begin_ms = time[static_cast<std::size_t>(l.support.front())];
  t.support_end_ms = time[static_cast<std::size_t>(l.support.back())];
  t.query_begin_ms = time[static_cast<std::size_t>(l.query.front())];
  t.query_end_ms = time[static_cast<std::size_t>(l.query.back())];
  // Completeness over every bar the task reads from its first feature row to its last label bar.
  std::int64_t filled = 0, total = 0;
  for (int s : q.series) {
    const auto& f = m.market.series[static_cast<std::size_t>(s)].filled;
    for (std::int64_t k = l.support.front(); k <= l.last_bar; ++k, ++total) filled += f[static_cast<std::size_t>(k)];
  }
  t.difficulty = task_difficulty(t);
  t.quality = task_quality(t, total > 0 ? 1.0 - static_cast<double>(filled) / static_cast<double>(total) : 1.0);
  return t;
}

void append_row(std::vector<double>& dst, const double* src, std::int64_t n) { dst.insert(dst.end(), src, src + n); }

class SingleSeriesFamily : public TaskFamily {
 public:
  explicit SingleSeriesFamily(FamilyConfig c) : c_(std::move(c)) {}
  std::int64_t feature_dim(const PreparedMarket& m) const override { return m.feature_config.count(); }
  const FamilyConfig& config() const override { return c_; }
  std::vector<std::vector<int>> candidates(const Market& m) const override {
    std::vector<std::vector<int>> out;
    for (std::size_t i = 0; i < m.series.size(); ++i) out.push_back({static_cast<int>(i)});
    return out;
  }
  Task make_task(const PreparedMarket& m, const TaskRequest& request) const override {
    const TaskRequest q = normalise(m, request);
    if (q.series.size() != 1) fail(name() + ": needs exactly one series, got " + std::to_string(q.series.size()));
    const Layout l = make_layout(m, q, min_begin(m), name());
    const Series& s = m.market.series[static_cast<std::size_t>(q.series[0])];
    const FeatureMatrix& f = m.features[static_cast<std::size_t>(q.series[0])];
    Assembled a;
    a.dim = f.cols;
    for (std::int64_t t : l.support) {
      append_row(a.support_x, f.row(t), f.cols);
      label(s, t, q.horizon, a.support_c, a.support_y);
    }
    for (std::int64_t t : l.query) {
      append_row(a.query_x, f.row(t), f.cols);
      label(s, t, q.horizon, a.query_c, a.query_y);
    }
    return finish(m, q, l, a, name(), kind(), num_classes());
  }

 protected:
  virtual void label(const Series& s, std::int64_t t, std::int64_t h, std::vector<std::int64_t>& cls,
                     std::vector<double>& y) const = 0;
  FamilyConfig c_;
};

class PriceDirection final : public SingleSeriesFamily {
 public:
  using SingleSeriesFamily::SingleSeriesFamily;
  std::string name() const override { return "price_direction"; }
  TaskKind kind() const override { return TaskKind::classification; }
  std::int64_t num_classes() const override { return 3; }

 protected:
  void label(const Series& s, std::int64_t t, std::int64_t h, std::vector<std::int64_t>& cls,
             std::vector<double>&) const override {
    const double thr =
        c_.direction_threshold * trailing_vol(s, t, c_.trailing_vol_window) * std::sqrt(static_cast<double>(h));
    const double fwd = forward_return(s, t, h);
    cls.push_back(fwd > thr ? 2 : (fwd < -thr ? 0 : 1));  // SELL 0, HOLD 1, BUY 2
  }
};

class MarketRegime final : public SingleSeriesFamily {
 public:
  using SingleSeriesFamily::SingleSeriesFamily;
  std::string name() const override { return "market_regime"; }
  TaskKind kind() const override { return TaskKind::classification; }
  std::int64_t num_classes() const override { return 4; }

 protected:
  void label(const Series& s, std::int64_t t, std::int64_t h, std::vector<std::int64_t>& cls,
             std::vector<double>&) const override {
    const double sigma = trailing_vol(s, t, c_.trailing_vol_window);
    const double fv = forward_vol(s, t, h), fwd = forward_return(s, t, h);
    const double thr = c_.regime_trend_threshold * sigma * std::sqrt(static_cast<double>(h));
    Regime r = Regime::sideways;
    if (fv > c_.regime_high_vol_ratio * sigma)
      r = Regime::high_volatility;
    else if (fwd > thr)
      r = Regime::bull;
    else if (fwd < -thr)
      r = Regime::bear;
    cls.push_back(static_cast<std::int64_t>(r));
  }
};

class Risk final : public SingleSeriesFamily {
 public:
  using SingleSeriesFamily::SingleSeriesFamily;
  std::string name() const override { return "risk"; }
  TaskKind kind() const override { return c_.risk_var_exceedance ? TaskKind::classification : TaskKind::regression; }
  std::int64_t num_classes() const override { return c_.risk_var_exceedance ? 2 : 0; }
  std::int64_t min_begin(const PreparedMarket& m) const override {
    return c_.risk_var_exceedance ? std::max(m.warmup, c_.var_window + 64) : m.warmup;
  }

 protected:
  void label(const Series& s, std::int64_t t, std::int64_t h, std::vector<std::int64_t>& cls,
             std::vector<double>& y) const override {
    if (!c_.risk_var_exceedance) {
      y.push_back(std::log(std::max(forward_vol(s, t, h), 1e-6)));
      return;
    }
    // Trailing empirical quantile of h-bar log returns that ended at or before t.
    std::vector<double> past;
    for (std::int64_t u = std::max(h, t - c_.var_window + 1); u <= t; ++u) past.push_back(forward_return(s, u - h, h));
    const auto k = static_cast<std::size_t>(std::floor(c_.var_level * static_cast<double>(past.size() - 1)));
    std::nth_element(past.begin(), past.begin() + static_cast<std::ptrdiff_t>(k), past.end());
    cls.push_back(forward_return(s, t, h) < past[k] ? 1 : 0);
  }
};

// Price-discrepancy detection on a log deviation d(u) that is 0 when prices are consistent:
//   arbitrage (cross-exchange): d = log(close_a / close_b), one symbol on two exchanges;
//   triangular_arbitrage: d = log(close_XQ) - log(close_XB) - log(close_BQ), three pairs on one
//   exchange (e.g. ETH/USDT, ETH/BTC, BTC/USDT): buying X with Q directly versus through B.
// Label 1 if |d(u)| exceeds the fees of the round trip (two trades, resp. three) plus the margin at
// some bar u in t+1..t+h. Features (indicators): the first series' features plus 8 deviation
// features over the last 20 bars. Features (raw windows): the first series' 5 channels plus a sixth,
// d(u) / threshold over the same W bars (|value| > 1: the gap exceeds fees + margin at bar u), so a
// row still reshapes to (channels, W).
class Arbitrage final : public TaskFamily {
 public:
  static constexpr int kSpreadFeatures = 8;
  static constexpr std::int64_t kSpreadWindow = 20;  // bars the 8 deviation features read
  Arbitrage(FamilyConfig c, bool triangular) : c_(std::move(c)), triangular_(triangular) {}
  std::string name() const override { return triangular_ ? "triangular_arbitrage" : "arbitrage"; }
  TaskKind kind() const override { return TaskKind::classification; }
  std::int64_t num_classes() const override { return 2; }
  std::int64_t feature_dim(const PreparedMarket& m) const override {
    return m.feature_config.count() + spread_columns(m);
  }
  std::int64_t min_begin(const PreparedMarket& m) const override { return std::max(m.warmup, spread_window(m) - 1); }
  const FamilyConfig& config() const override { return c_; }
  std::vector<std::vector<int>> candidates(const Market& m) const override {
    std::vector<std::vector<int>> out;
    if (triangular_) {
      for (std::size_t i = 0; i < m.series.size(); ++i) {
        const auto [x, q] = split_pair(m.series[i].symbol);
        if (x.empty()) continue;
        for (std::size_t j = 0; j < m.series.size(); ++j) {
          const auto [x2, b] = split_pair(m.series[j].symbol);
          if (j == i || x2 != x || b == q || m.series[j].exchange != m.series[i].exchange) continue;
          const int k = m.find(b + "/" + q, m.series[i].exchange);
          if (k >= 0) out.push_back({static_cast<int>(i), static_cast<int>(j), k});
        }
      }
      return out;
    }
    for (const std::string& sym : m.symbols()) {
      const auto idx = m.series_of(sym);
      for (std::size_t i = 0; i < idx.size(); ++i)
        for (std::size_t j = i + 1; j < idx.size(); ++j)
          if (m.series[static_cast<std::size_t>(idx[i])].exchange !=
              m.series[static_cast<std::size_t>(idx[j])].exchange)
            out.push_back({idx[i], idx[j]});
    }
    return out;
  }
  Task make_task(const PreparedMarket& m, const TaskRequest& q) const override {
    std::vector<const Series*> s;
    for (int i : q.series) s.push_back(&m.market.series[static_cast<std::size_t>(i)]);
    check_series(s);
    const Layout l = make_layout(m, q, min_begin(m), name());
    const double threshold = arbitrage_threshold(m.market, q.series, c_.arbitrage_margin);
    // The deviation over every bar a row reads: the window before the first decision row through the
    // last label bar; computed once, not per row.
    const std::int64_t window = spread_window(m);
    const std::int64_t first = std::min(l.support.front(), l.query.front()) - (window - 1);
    if (first < 0)
      fail(name() + ": the first decision row must be >= " + std::to_string(window - 1) + " (the " +
           std::to_string(window) + "-bar deviation features)");
    std::vector<double> deviation(static_cast<std::size_t>(l.last_bar - first + 1));
    for (std::int64_t u = first; u <= l.last_bar; ++u)
      deviation[static_cast<std::size_t>(u - first)] = arbitrage_deviation(m.market, q.series, u);
    auto d = [&](std::int64_t u) { return deviation[static_cast<std::size_t>(u - first)]; };
    const FeatureMatrix& f = m.features[static_cast<std::size_t>(q.series[0])];
    const bool raw = m.feature_config.is_raw_window();
    Assembled a;
    a.dim = f.cols + spread_columns(m);
    auto row = [&](std::int64_t t, std::vector<double>& x, std::vector<std::int64_t>& cls) {
      append_row(x, f.row(t), f.cols);
      if (raw) {
        for (std::int64_t u = t - (window - 1); u <= t; ++u) x.push_back(d(u) / threshold);
      } else {
        double mean = 0, sd = 0;
        for (std::int64_t k = t - (window - 1); k <= t; ++k) mean += d(k);
        mean /= static_cast<double>(window);
        for (std::int64_t k = t - (window - 1); k <= t; ++k) sd += (d(k) - mean) * (d(k) - mean);
        sd = std::sqrt(sd / static_cast<double>(window));
        const double now = d(t);
        const double extra[kSpreadFeatures] = {now * 100,
                                               std::fabs(now) * 100,
                                               (now - d(t - 1)) * 100,
                                               (now - d(t - 4)) * 100,
                                               mean * 100,
                                               sd * 100,
                                               sd > 1e-12 ? (now - mean) / sd : 0.0,
                                               (std::fabs(now) - threshold) * 100};
        x.insert(x.end(), extra, extra + kSpreadFeatures);
      }
      int hit = 0;
      for (std::int64_t u = t + 1; u <= t + q.horizon && !hit; ++u) hit = std::fabs(d(u)) > threshold;
      cls.push_back(hit);
    };
    for (std::int64_t t : l.support) row(t, a.support_x, a.support_c);
    for (std::int64_t t : l.query) row(t, a.query_x, a.query_c);
    return finish(m, q, l, a, name(), kind(), 2);
  }

 private:
  // Columns appended after the first series' features: 8 deviation features, or a W-bar channel.
  static std::int64_t spread_columns(const PreparedMarket& m) {
    return m.feature_config.is_raw_window() ? m.feature_config.raw_window.length : kSpreadFeatures;
  }
  // Bars t-window+1 .. t of the deviation that row t reads.
  static std::int64_t spread_window(const PreparedMarket& m) {
    return m.feature_config.is_raw_window() ? m.feature_config.raw_window.length : kSpreadWindow;
  }
  // "ETH/BTC" -> {"ETH", "BTC"}; {"", ""} when the symbol names no quote currency.
  static std::pair<std::string, std::string> split_pair(const std::string& symbol) {
    const auto slash = symbol.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == symbol.size()) return {"", ""};
    return {symbol.substr(0, slash), symbol.substr(slash + 1)};
  }

  void check_series(const std::vector<const Series*>& s) const {
    if (!triangular_) {
      if (s.size() != 2)
        fail("arbitrage: needs two series of one symbol on two exchanges, got " + std::to_string(s.size()) +
             " (the market needs >= 2 exchanges per symbol; the simulator provides them)");
      if (s[0]->symbol != s[1]->symbol || s[0]->exchange == s[1]->exchange)
        fail("arbitrage: series " + s[0]->label() + " and " + s[1]->label() +
             " must quote one symbol on two exchanges");
      return;
    }
    if (s.size() != 3)
      fail(
          "triangular_arbitrage: needs three series X/Q, X/B, B/Q on one exchange (e.g. ETH/USDT, ETH/BTC, "
          "BTC/USDT), got " +
          std::to_string(s.size()));
    const auto [x, q] = split_pair(s[0]->symbol);
    const auto [x2, b] = split_pair(s[1]->symbol);
    const auto [b2, q2] = split_pair(s[2]->symbol);
    const bool same_exchange = s[0]->exchange == s[1]->exchange && s[1]->exchange == s[2]->exchange;
    if (x.empty() || x2.empty() || b2.empty() || x != x2 || b != b2 || q != q2 || b == q || !same_exchange)
      fail("triangular_arbitrage: series " + s[0]->label() + ", " + s[1]->label() + ", " + s[2]->label() +
           " do not form a triangle X/Q, X/B, B/Q on one exchange (symbols must be written BASE/QUOTE)");
  }

  FamilyConfig c_;
  bool triangular_;
};

class Portfolio final : public TaskFamily {
 public:
  explicit Portfolio(FamilyConfig c) : c_(std::move(c)) {
    if (c_.portfolio_assets < 1) fail("portfolio: portfolio_assets must be >= 1");
  }
  std::string name() const override { return "portfolio"; }
  TaskKind kind() const override { return TaskKind::portfolio; }
  const FamilyConfig& config() const override { return c_; }
  std::int64_t feature_dim(const PreparedMarket& m) const override {
    return m.feature_config.count() * assets(m.market);
  }
  std::vector<std::vector<int>> candidates(const Market& m) const override {
    std::vector<int> firsts;
    for (const std::string& sym : m.symbols()) firsts.push_back(m.series_of(sym).front());
    const int n = assets(m);
    std::vector<std::vector<int>> out;
    for (std::size_t i = 0; i < firsts.size(); ++i) {
      std::vector<int> g;
      for (int k = 0; k < n; ++k) g.push_back(firsts[(i + static_cast<std::size_t>(k)) % firsts.size()]);
      out.push_back(g);
      if (static_cast<int>(firsts.size()) == n) break;  // one group when all symbols are used
    }
    return out;
  }
  TaskRequest normalise(const PreparedMarket& m, TaskRequest q) const override {
    std::int64_t period_ms = 0;
    if (c_.rebalance == "daily")
      period_ms = 86'400'000;
    else if (c_.rebalance == "weekly")
      period_ms = 7 * 86'400'000LL;
    else {
      const long long bars = std::atoll(c_.rebalance.c_str());
      if (bars <= 0) fail("portfolio: rebalance '" + c_.rebalance + "' is not daily, weekly or a bar count");
      q.stride = q.horizon = bars;
    }
    if (period_ms > 0) {
      const std::int64_t iv = m.market.interval_ms();
      q.stride = q.horizon = std::max<std::int64_t>(1, iv > 0 ? period_ms / iv : 1);
    }
    if (q.embargo != 0 && q.embargo < q.horizon) q.embargo = q.horizon;
    return q;
  }
  Task make_task(const PreparedMarket& m, const TaskRequest& request) const override {
    const TaskRequest q = normalise(m, request);
    if (q.series.empty()) fail("portfolio: needs at least one series");
    const Layout l = make_layout(m, q, min_begin(m), name());
    Assembled a;
    a.outputs = static_cast<std::int64_t>(q.series.size());
    a.dim = m.feature_config.count() * a.outputs;
    auto row = [&](std::int64_t t, std::vector<double>& x, std::vector<double>& y) {
      for (int s : q.series) {
        const FeatureMatrix& f = m.features[static_cast<std::size_t>(s)];
        append_row(x, f.row(t), f.cols);
      }
      for (int s : q.series) {
        const Series& ser = m.market.series[static_cast<std::size_t>(s)];
        y.push_back(ser.close[static_cast<std::size_t>(t + q.horizon)] / ser.close[static_cast<std::size_t>(t)] - 1.0);
      }
    };
    for (std::int64_t t : l.support) row(t, a.support_x, a.support_y);
    for (std::int64_t t : l.query) row(t, a.query_x, a.query_y);
    return finish(m, q, l, a, name(), kind(), 0);
  }

 private:
  int assets(const Market& m) const {
    return std::max(1, std::min(c_.portfolio_assets, static_cast<int>(m.symbols().size())));
  }
  FamilyConfig c_;
};

}  // namespace

double arbitrage_deviation(const Market& market, const std::vector<int>& series, std::int64_t u) {
  if (series.size() != 2 && series.size() != 3)
    fail("arbitrage_deviation: needs 2 series (one symbol on two exchanges) or 3 (X/Q, X/B, B/Q), got " +
         std::to_string(series.size()));
  if (u < 0 || u >= market.rows())
    fail("arbitrage_deviation: bar " + std::to_string(u) + " is outside the market's " + std::to_string(market.rows()) +
         " bars");
  const auto at = [&](std::size_t k) {
    const int s = series[k];
    if (s < 0 || s >= static_cast<int>(market.series.size()))
      fail("arbitrage_deviation: series index " + std::to_string(s) + " out of range (" +
           std::to_string(market.series.size()) + " series)");
    return std::log(market.series[static_cast<std::size_t>(s)].close[static_cast<std::size_t>(u)]);
  };
  return series.size() == 3 ? at(0) - at(1) - at(2) : at(0) - at(1);
}

double arbitrage_threshold(const Market& market, const std::vector<int>& series, double margin) {
  double threshold = margin;
  for (int s : series) {
    if (s < 0 || s >= static_cast<int>(market.series.size()))
      fail("arbitrage_threshold: series index " + std::to_string(s) + " out of range (" +
           std::to_string(market.series.size()) + " series)");
    threshold += market.series[static_cast<std::size_t>(s)].fee_rate;
  }
  return threshold;
}

namespace {

// A factory of the registry: the family class F built from the config (and F's extra arguments).
template <class F, auto... Args>
std::unique_ptr<TaskFamily> make_as(const FamilyConfig& config) {
  return std::make_unique<F>(config, Args...);
}

}  // namespace

const std::vector<FamilyInfo>& family_registry() {
  using K = TaskKind;
  static const std::vector<FamilyInfo> registry = {
      {.name = "price_direction",
       .kind = K::classification,
       .help = "SELL / HOLD / BUY from the forward return over the horizon against trailing volatility",
       .trades_direction = true,
       .make = make_as<PriceDirection>},
      {.name = "market_regime",
       .kind = K::classification,
       .help = "bull / bear / sideways / high-volatility regime of the forward window",
       .make = make_as<MarketRegime>},
      {.name = "arbitrage",
       .kind = K::classification,
       .help = "does one symbol's price gap between two exchanges exceed the fees within the horizon",
       .detection = true,
       .make = make_as<Arbitrage, false>},
      {.name = "triangular_arbitrage",
       .kind = K::classification,
       .help = "does the X/Q, X/B, B/Q cycle on one exchange deviate past the fees within the horizon",
       .detection = true,
       .make = make_as<Arbitrage, true>},
      {.name = "portfolio",
       .kind = K::portfolio,
       .help = "weights over portfolio_assets symbols, scored by the Sharpe ratio",
       .make = make_as<Portfolio>},
      {.name = "risk",
       .kind = K::regression,
       .help = "log forward realised volatility (or VaR exceedance with risk_var_exceedance)",
       .forecasts_volatility = true,
       .make = make_as<Risk>},
  };
  return registry;
}

const FamilyInfo* find_family(const std::string& name) { return find_named(family_registry(), name); }

const FamilyInfo& family_info(const std::string& name) {
  if (const FamilyInfo* f = find_family(name)) return *f;
  fail("make_family: unknown family '" + name + "' (known: " + family_names_text() + ")");
}

std::vector<std::string> family_names() { return entry_names(family_registry()); }

std::string family_names_text(const std::string& separator) { return join_names(family_names(), separator, separator); }

std::unique_ptr<TaskFamily> make_family(const std::string& name, const FamilyConfig& config) {
  return family_info(name).make(config);
}

double task_difficulty(const Task& task) {
  const std::int64_t S = task.support_x.dim(0), Q = task.query_x.dim(0), D = task.support_x.dim(1);
  const auto sx = task.support_x.to_vector<float>(), qx = task.query_x.to_vector<float>();
  const std::int64_t k = std::min<std::int64_t>(5, S);
  std::vector<std::pair<double, std::int64_t>> dist(static_cast<std::size_t>(S));
  std::vector<std::vector<std::int64_t>> neighbours(static_cast<std::size_t>(Q));
  for (std::int64_t j = 0; j < Q; ++j) {
    for (std::int64_t i = 0; i < S; ++i) {
      double d = 0;
      for (std::int64_t c = 0; c < D; ++c) {
        const double e = qx[static_cast<std::size_t>(j * D + c)] - sx[static_cast<std::size_t>(i * D + c)];
        d += e * e;
      }
      dist[static_cast<std::size_t>(i)] = {d, i};
    }
    std::partial_sort(dist.begin(), dist.begin() + k, dist.end());
    for (std::int64_t n = 0; n < k; ++n)
      neighbours[static_cast<std::size_t>(j)].push_back(dist[static_cast<std::size_t>(n)].second);
  }
  double skill = 0;
  if (task.kind == TaskKind::classification) {
    const auto sy = task.support_y.to_vector<std::int64_t>(), qy = task.query_y.to_vector<std::int64_t>();
    const std::int64_t C = std::max<std::int64_t>(task.num_classes, 2);
    std::vector<double> hit(static_cast<std::size_t>(C), 0), count(static_cast<std::size_t>(C), 0);
    for (std::int64_t j = 0; j < Q; ++j) {
      std::vector<int> votes(static_cast<std::size_t>(C), 0);
      for (std::int64_t i : neighbours[static_cast<std::size_t>(j)])
        votes[static_cast<std::size_t>(sy[static_cast<std::size_t>(i)])]++;
      const auto pred = std::max_element(votes.begin(), votes.end()) - votes.begin();
      const auto truth = static_cast<std::size_t>(qy[static_cast<std::size_t>(j)]);
      count[truth] += 1;
      hit[truth] += pred == static_cast<std::ptrdiff_t>(truth);
    }
    double bacc = 0;
    int present = 0;
    for (std::int64_t c = 0; c < C; ++c)
      if (count[static_cast<std::size_t>(c)] > 0)
        bacc += hit[static_cast<std::size_t>(c)] / count[static_cast<std::size_t>(c)], ++present;
    bacc /= std::max(present, 1);
    const double chance = 1.0 / static_cast<double>(C);
    skill = (bacc - chance) / (1 - chance);
  } else {
    const auto sy = task.support_y.to_vector<float>(), qy = task.query_y.to_vector<float>();
    const std::int64_t O = task.support_y.dim(1);
    double r2_sum = 0;
    for (std::int64_t o = 0; o < O; ++o) {
      double mean = 0;
      for (std::int64_t j = 0; j < Q; ++j) mean += qy[static_cast<std::size_t>(j * O + o)];
      mean /= static_cast<double>(Q);
      double sse = 0, sst = 0;
      for (std::int64_t j = 0; j < Q; ++j) {
        double pred = 0;
        for (std::int64_t i : neighbours[static_cast<std::size_t>(j)]) pred += sy[static_cast<std::size_t>(i * O + o)];
        pred /= static_cast<double>(k);
        const double y = qy[static_cast<std::size_t>(j * O + o)];
        sse += (y - pred) * (y - pred);
        sst += (y - mean) * (y - mean);
      }
      r2_sum += sst > 0 ? 1 - sse / sst : 0.0;
    }
    skill = r2_sum / static_cast<double>(O);
  }
  return 1.0 - std::clamp(skill, 0.0, 1.0);
}

double task_quality(const Task& task, double completeness) {
  double balance = 1.0;
  if (task.kind == TaskKind::classification && task.num_classes > 1) {
    const auto y = task.support_y.to_vector<std::int64_t>();
    std::vector<double> p(static_cast<std::size_t>(task.num_classes), 0.0);
    for (std::int64_t c : y) p[static_cast<std::size_t>(c)] += 1.0 / static_cast<double>(y.size());
    double h = 0;
    for (double q : p)
      if (q > 0) h -= q * std::log(q);
    balance = h / std::log(static_cast<double>(task.num_classes));
  }
  return std::clamp(completeness, 0.0, 1.0) * std::clamp(balance, 0.0, 1.0);
}

}  // namespace metatape::tasks
