#include "tasks/features.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"

namespace metatape::tasks {

namespace {

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

// Mean and population standard deviation of x[t-w+1 .. t].
void window_stats(const std::vector<double>& x, std::int64_t t, int w, double& mean, double& sd) {
  double s = 0;
  for (std::int64_t k = t - w + 1; k <= t; ++k) s += x[static_cast<std::size_t>(k)];
  mean = s / w;
  double v = 0;
  for (std::int64_t k = t - w + 1; k <= t; ++k) {
    const double d = x[static_cast<std::size_t>(k)] - mean;
    v += d * d;
  }
  sd = std::sqrt(v / w);
}

// Exponential moving average with alpha = 2 / (span + 1), started at x[0] (causal).
std::vector<double> ema(const std::vector<double>& x, int span) {
  std::vector<double> out(x.size());
  const double a = 2.0 / (span + 1.0);
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = i == 0 ? x[0] : a * x[i] + (1 - a) * out[i - 1];
  return out;
}

// Wilder smoothing: mean of the first p values, then s = s + (x - s) / p; rows < p are 0.
std::vector<double> wilder(const std::vector<double>& x, int p, std::size_t first) {
  std::vector<double> out(x.size(), 0.0);
  double s = 0;
  for (std::size_t i = first; i < x.size(); ++i) {
    const std::size_t k = i - first;
    if (k < static_cast<std::size_t>(p)) {
      s += x[i];
      if (k + 1 == static_cast<std::size_t>(p)) s /= p;
      out[i] = k + 1 == static_cast<std::size_t>(p) ? s : 0.0;
    } else {
      s += (x[i] - s) / p;
      out[i] = s;
    }
  }
  return out;
}

}  // namespace

FeatureSet parse_feature_set(const std::string& name) {
  if (name == "indicators") return FeatureSet::indicators;
  if (name == "raw_window") return FeatureSet::raw_window;
  fail("features: unknown feature set '" + name + "' (choose indicators or raw_window)");
}

std::string feature_set_name(FeatureSet set) { return set == FeatureSet::raw_window ? "raw_window" : "indicators"; }

std::int64_t FeatureConfig::count() const {
  if (is_raw_window()) return raw_window.count();
  return static_cast<std::int64_t>(return_lags.size() + vol_windows.size() + rsi_periods.size() + 3 * macd.size() +
                                   bollinger_windows.size() + atr_periods.size() + stochastic_periods.size() +
                                   (stochastic_periods.empty() ? 0 : 1) + volume_z_windows.size() +
                                   range_windows.size() + skew_windows.size() + kurtosis_windows.size() +
                                   price_z_windows.size() + sma_ratios.size() + up_fraction_windows.size());
}

std::vector<std::string> FeatureConfig::names() const {
  if (is_raw_window()) return raw_window.names();
  std::vector<std::string> n;
  auto add = [&](const std::string& prefix, const std::vector<int>& ws) {
    for (int w : ws) n.push_back(prefix + std::to_string(w));
  };
  add("logret_", return_lags);
  add("rvol_", vol_windows);
  add("rsi_", rsi_periods);
  for (const auto& m : macd) {
    const std::string s = std::to_string(m[0]) + "_" + std::to_string(m[1]) + "_" + std::to_string(m[2]);
    n.push_back("macd_" + s);
    n.push_back("macd_signal_" + s);
    n.push_back("macd_hist_" + s);
  }
  add("bollinger_pb_", bollinger_windows);
  add("atr_", atr_periods);
  add("stoch_k_", stochastic_periods);
  if (!stochastic_periods.empty())
    n.push_back("stoch_d_" + std::to_string(stochastic_periods[stochastic_periods.size() / 2]));
  add("volume_z_", volume_z_windows);
  add("range_", range_windows);
  add("skew_", skew_windows);
  add("kurt_", kurtosis_windows);
  add("price_z_", price_z_windows);
  for (const auto& r : sma_ratios) n.push_back("sma_ratio_" + std::to_string(r[0]) + "_" + std::to_string(r[1]));
  add("up_frac_", up_fraction_windows);
  return n;
}

std::int64_t FeatureConfig::warmup() const {
  if (is_raw_window()) return raw_window.warmup();
  int m = 1;
  auto upd = [&](const std::vector<int>& ws, int extra) {
    for (int w : ws) m = std::max(m, w + extra);
  };
  upd(return_lags, 0);
  upd(vol_windows, 0);
  upd(rsi_periods, 0);
  for (const auto& c : macd) m = std::max(m, 2 * (c[1] + c[2]));  // EMAs settle
  upd(bollinger_windows, 0);
  upd(atr_periods, 0);
  upd(stochastic_periods, 2);
  upd(volume_z_windows, 0);
  upd(range_windows, 0);
  upd(skew_windows, 0);
  upd(kurtosis_windows, 0);
  upd(price_z_windows, 0);
  for (const auto& r : sma_ratios) m = std::max({m, r[0], r[1]});
  upd(up_fraction_windows, 0);
  return m + 1;
}

FeatureMatrix compute_features(const Series& s, const FeatureConfig& config) {
  if (config.is_raw_window()) config.raw_window.check();
  FeatureMatrix fm;
  fm.rows = s.size();
  fm.cols = config.count();
  fm.warmup = config.warmup();
  fm.names = config.names();
  fm.values.assign(static_cast<std::size_t>(fm.rows * fm.cols), 0.0);
  const std::int64_t n = fm.rows;
  if (n == 0) return fm;
  if (config.is_raw_window()) {
    for (std::int64_t t = fm.warmup; t < n; ++t)
      raw_window_row(s, t, config.raw_window, fm.values.data() + t * fm.cols);
    return fm;
  }
  const auto& c = s.close;
  std::vector<double> r(static_cast<std::size_t>(n), 0.0), lv(static_cast<std::size_t>(n));
  for (std::int64_t t = 1; t < n; ++t)
    r[static_cast<std::size_t>(t)] = std::log(c[static_cast<std::size_t>(t)] / c[static_cast<std::size_t>(t - 1)]);
  for (std::int64_t t = 0; t < n; ++t)
    lv[static_cast<std::size_t>(t)] = std::log1p(std::max(0.0, s.volume[static_cast<std::size_t>(t)]));

  std::int64_t col = 0;
  auto set = [&](std::int64_t t, double v) {
    fm.values[static_cast<std::size_t>(t * fm.cols + col)] = finite_or_zero(v);
  };
  // Each block fills rows where its own window is complete (earlier rows stay 0, before warmup).
  for (int L : config.return_lags) {
    for (std::int64_t t = L; t < n; ++t)
      set(t, std::log(c[static_cast<std::size_t>(t)] / c[static_cast<std::size_t>(t - L)]));
    ++col;
  }
  for (int w : config.vol_windows) {
    for (std::int64_t t = w; t < n; ++t) {
      double q = 0;
      for (std::int64_t k = t - w + 1; k <= t; ++k)
        q += r[static_cast<std::size_t>(k)] * r[static_cast<std::size_t>(k)];
      set(t, std::sqrt(q / w));
    }
    ++col;
  }
  for (int p : config.rsi_periods) {
    std::vector<double> gain(static_cast<std::size_t>(n), 0.0), loss(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t t = 1; t < n; ++t) {
      const double d = c[static_cast<std::size_t>(t)] - c[static_cast<std::size_t>(t - 1)];
      gain[static_cast<std::size_t>(t)] = std::max(d, 0.0);
      loss[static_cast<std::size_t>(t)] = std::max(-d, 0.0);
    }
    const auto g = wilder(gain, p, 1), l = wilder(loss, p, 1);
    for (std::int64_t t = p; t < n; ++t) {
      const double gs = g[static_cast<std::size_t>(t)], ls = l[static_cast<std::size_t>(t)];
      set(t, gs + ls > 0 ? (gs - ls) / (gs + ls) : 0.0);  // = (RSI - 50) / 50
    }
    ++col;
  }
  for (const auto& m : config.macd) {
    const auto fast = ema(c, m[0]), slow = ema(c, m[1]);
    std::vector<double> line(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t)
      line[static_cast<std::size_t>(t)] =
          (fast[static_cast<std::size_t>(t)] - slow[static_cast<std::size_t>(t)]) / c[static_cast<std::size_t>(t)];
    const auto signal = ema(line, m[2]);
    for (std::int64_t t = 0; t < n; ++t) set(t, line[static_cast<std::size_t>(t)]);
    ++col;
    for (std::int64_t t = 0; t < n; ++t) set(t, signal[static_cast<std::size_t>(t)]);
    ++col;
    for (std::int64_t t = 0; t < n; ++t)
      set(t, line[static_cast<std::size_t>(t)] - signal[static_cast<std::size_t>(t)]);
    ++col;
  }
  for (int w : config.bollinger_windows) {
    for (std::int64_t t = w - 1; t < n; ++t) {
      double mean = 0, sd = 0;
      window_stats(c, t, w, mean, sd);
      set(t, sd > 0 ? (c[static_cast<std::size_t>(t)] - (mean - 2 * sd)) / (4 * sd) : 0.5);
    }
    ++col;
  }
  {
    std::vector<double> tr(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t t = 1; t < n; ++t) {
      const auto i = static_cast<std::size_t>(t);
      tr[i] = std::max({s.high[i] - s.low[i], std::fabs(s.high[i] - c[i - 1]), std::fabs(s.low[i] - c[i - 1])});
    }
    for (int p : config.atr_periods) {
      const auto atr = wilder(tr, p, 1);
      for (std::int64_t t = p; t < n; ++t) set(t, atr[static_cast<std::size_t>(t)] / c[static_cast<std::size_t>(t)]);
      ++col;
    }
  }
  {
    std::vector<double> middle_k(static_cast<std::size_t>(n), 0.5);
    for (std::size_t j = 0; j < config.stochastic_periods.size(); ++j) {
      const int p = config.stochastic_periods[j];
      for (std::int64_t t = p - 1; t < n; ++t) {
        double hh = -1e300, ll = 1e300;
        for (std::int64_t k = t - p + 1; k <= t; ++k) {
          hh = std::max(hh, s.high[static_cast<std::size_t>(k)]);
          ll = std::min(ll, s.low[static_cast<std::size_t>(k)]);
        }
        const double v = hh > ll ? (c[static_cast<std::size_t>(t)] - ll) / (hh - ll) : 0.5;
        set(t, v);
        if (j == config.stochastic_periods.size() / 2) middle_k[static_cast<std::size_t>(t)] = v;
      }
      ++col;
    }
    if (!config.stochastic_periods.empty()) {
      const int p = config.stochastic_periods[config.stochastic_periods.size() / 2];
      for (std::int64_t t = p + 1; t < n; ++t)
        set(t, (middle_k[static_cast<std::size_t>(t)] + middle_k[static_cast<std::size_t>(t - 1)] +
                middle_k[static_cast<std::size_t>(t - 2)]) /
                   3.0);
      ++col;
    }
  }
  for (int w : config.volume_z_windows) {
    for (std::int64_t t = w - 1; t < n; ++t) {
      double mean = 0, sd = 0;
      window_stats(lv, t, w, mean, sd);
      set(t, sd > 1e-12 ? (lv[static_cast<std::size_t>(t)] - mean) / sd : 0.0);
    }
    ++col;
  }
  for (int w : config.range_windows) {
    for (std::int64_t t = w - 1; t < n; ++t) {
      double m = 0;
      for (std::int64_t k = t - w + 1; k <= t; ++k) {
        const auto i = static_cast<std::size_t>(k);
        m += (s.high[i] - s.low[i]) / c[i];
      }
      set(t, m / w);
    }
    ++col;
  }
  auto moments = [&](const std::vector<int>& windows, int order) {
    for (int w : windows) {
      for (std::int64_t t = w; t < n; ++t) {
        double mean = 0, sd = 0;
        window_stats(r, t, w, mean, sd);
        if (sd < 1e-12) {
          set(t, 0.0);
          continue;
        }
        double m = 0;
        for (std::int64_t k = t - w + 1; k <= t; ++k)
          m += std::pow((r[static_cast<std::size_t>(k)] - mean) / sd, order);
        set(t, order == 3 ? m / w : m / w - 3.0);
      }
      ++col;
    }
  };
  moments(config.skew_windows, 3);
  moments(config.kurtosis_windows, 4);
  for (int w : config.price_z_windows) {
    for (std::int64_t t = w - 1; t < n; ++t) {
      double mean = 0, sd = 0;
      window_stats(c, t, w, mean, sd);
      set(t, sd > 0 ? (c[static_cast<std::size_t>(t)] - mean) / sd : 0.0);
    }
    ++col;
  }
  for (const auto& ratio : config.sma_ratios) {
    const int a = ratio[0], b = ratio[1];
    for (std::int64_t t = std::max(a, b) - 1; t < n; ++t) {
      double sa = 0, sb = 0;
      for (std::int64_t k = t - a + 1; k <= t; ++k) sa += c[static_cast<std::size_t>(k)];
      for (std::int64_t k = t - b + 1; k <= t; ++k) sb += c[static_cast<std::size_t>(k)];
      set(t, std::log((sa / a) / (sb / b)));
    }
    ++col;
  }
  for (int w : config.up_fraction_windows) {
    for (std::int64_t t = w; t < n; ++t) {
      int up = 0;
      for (std::int64_t k = t - w + 1; k <= t; ++k) up += r[static_cast<std::size_t>(k)] > 0;
      set(t, static_cast<double>(up) / w);
    }
    ++col;
  }
  if (col != fm.cols) fail("compute_features: internal column count mismatch");
  return fm;
}

Normalizer Normalizer::fit(const std::vector<const double*>& rows, std::int64_t cols) {
  if (rows.empty()) fail("Normalizer::fit: no rows (the support set is empty)");
  Normalizer n;
  n.mean.assign(static_cast<std::size_t>(cols), 0.0);
  n.stddev.assign(static_cast<std::size_t>(cols), 0.0);
  for (const double* r : rows)
    for (std::int64_t j = 0; j < cols; ++j) n.mean[static_cast<std::size_t>(j)] += r[j];
  for (double& m : n.mean) m /= static_cast<double>(rows.size());
  for (const double* r : rows)
    for (std::int64_t j = 0; j < cols; ++j) {
      const double d = r[j] - n.mean[static_cast<std::size_t>(j)];
      n.stddev[static_cast<std::size_t>(j)] += d * d;
    }
  for (double& s : n.stddev) s = std::sqrt(s / static_cast<double>(rows.size()));
  return n;
}

void Normalizer::apply(const double* in, float* out, std::int64_t cols) const {
  for (std::int64_t j = 0; j < cols; ++j) {
    const auto k = static_cast<std::size_t>(j);
    const double z = stddev[k] < 1e-12 ? 0.0 : (in[j] - mean[k]) / stddev[k];
    out[j] = static_cast<float>(std::clamp(z, -clip, clip));
  }
}

void check_no_lookahead(const Series& series, const FeatureFunction& features, const std::vector<std::int64_t>& rows) {
  const FeatureMatrix full = features(series);
  for (std::int64_t t : rows) {
    if (t < 0 || t >= series.size())
      fail("check_no_lookahead: row " + std::to_string(t) + " out of range for " + std::to_string(series.size()) +
           " bars");
    const FeatureMatrix cut = features(series.slice(0, t + 1));
    if (cut.cols != full.cols || cut.rows != t + 1)
      fail("check_no_lookahead: the feature function changed shape on a truncated series");
    for (std::int64_t j = 0; j < full.cols; ++j) {
      const double a = full.at(t, j), b = cut.at(t, j);
      if (std::fabs(a - b) > 1e-9 * std::max(1.0, std::fabs(a))) {
        const std::string name = j < static_cast<std::int64_t>(full.names.size())
                                     ? full.names[static_cast<std::size_t>(j)]
                                     : std::to_string(j);
        fail("look-ahead: feature '" + name + "' at row " + std::to_string(t) + " is " + std::to_string(a) +
             " on the full series but " + std::to_string(b) + " when bars after row " + std::to_string(t) +
             " are removed: it reads the future (fix the feature so row t uses bars 0..t only)");
      }
    }
  }
}

}  // namespace metatape::tasks
