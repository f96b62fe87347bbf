#include "eval/sharpe_inference.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/error.h"

namespace metatape::eval {

ReturnMoments return_moments(const std::vector<double>& returns) {
  if (returns.empty()) fail("sharpe: no returns");
  for (std::size_t i = 0; i < returns.size(); ++i) {
    if (!std::isfinite(returns[i])) fail("sharpe: return " + std::to_string(i) + " is not finite");
  }
  ReturnMoments m;
  m.n = returns.size();
  const double n = static_cast<double>(m.n);
  double sum = 0.0;
  for (double r : returns) sum += r;
  m.mean = sum / n;
  double m2 = 0.0, m3 = 0.0, m4 = 0.0;
  for (double r : returns) {
    const double d = r - m.mean, d2 = d * d;
    m2 += d2;
    m3 += d2 * d;
    m4 += d2 * d2;
  }
  // A sample whose spread is at rounding level (e.g. n copies of 0.001, whose computed mean is off by
  // an ulp) is constant: sd 0 (Sharpe 0), normal skewness and kurtosis.
  if (m2 == 0.0 || std::sqrt(m2 / n) <= 1e-12 * std::abs(m.mean)) return m;
  m.sd = m.n > 1 ? std::sqrt(m2 / (n - 1.0)) : 0.0;
  m2 /= n;
  m3 /= n;
  m4 /= n;
  m.skewness = m3 / std::pow(m2, 1.5);
  m.kurtosis = m4 / (m2 * m2);
  return m;
}

double sharpe_ratio(const std::vector<double>& returns) {
  const ReturnMoments m = return_moments(returns);
  return m.sd > 0.0 ? m.mean / m.sd : 0.0;
}

double probabilistic_sharpe_ratio(double sharpe, double benchmark_sharpe, double n, double skewness, double kurtosis) {
  if (!(n >= 2.0)) fail("probabilistic_sharpe_ratio: needs at least 2 observations, got " + std::to_string(n));
  if (!std::isfinite(sharpe) || !std::isfinite(benchmark_sharpe) || !std::isfinite(skewness) ||
      !std::isfinite(kurtosis)) {
    fail("probabilistic_sharpe_ratio: Sharpe ratios, skewness and kurtosis must be finite");
  }
  const double radicand = std::max(1e-12, 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe);
  return normal_cdf((sharpe - benchmark_sharpe) * std::sqrt(n - 1.0) / std::sqrt(radicand));
}

double expected_maximum_sharpe(std::int64_t trials, double trial_variance, double mean) {
  if (trials < 1) fail("expected_maximum_sharpe: the number of trials must be >= 1, got " + std::to_string(trials));
  if (!(trial_variance >= 0.0) || !std::isfinite(trial_variance)) {
    fail("expected_maximum_sharpe: the trials' Sharpe variance must be finite and >= 0, got " +
         std::to_string(trial_variance));
  }
  if (trials == 1) return mean;
  const double n = static_cast<double>(trials);
  const double z = (1.0 - kEulerMascheroni) * normal_quantile(1.0 - 1.0 / n) +
                   kEulerMascheroni * normal_quantile(1.0 - 1.0 / (n * std::exp(1.0)));
  return mean + std::sqrt(trial_variance) * z;
}

double trial_sharpe_variance(const std::vector<double>& trial_sharpes) {
  if (trial_sharpes.size() < 2) return 0.0;
  for (double s : trial_sharpes) {
    if (!std::isfinite(s)) fail("trial_sharpe_variance: a trial's Sharpe ratio is not finite");
  }
  return std::pow(return_moments(trial_sharpes).sd, 2);
}

DeflatedSharpe deflated_sharpe_ratio(const std::vector<double>& returns, std::int64_t trials, double trial_variance) {
  if (returns.size() < 2) {
    fail("deflated_sharpe_ratio: needs at least 2 returns, got " + std::to_string(returns.size()));
  }
  const ReturnMoments m = return_moments(returns);
  DeflatedSharpe d;
  d.sharpe = m.sd > 0.0 ? m.mean / m.sd : 0.0;
  d.expected_max = expected_maximum_sharpe(trials, trial_variance);
  d.trials = trials;
  d.trial_variance = trial_variance;
  d.n = m.n;
  d.skewness = m.skewness;
  d.kurtosis = m.kurtosis;
  d.dsr = probabilistic_sharpe_ratio(d.sharpe, d.expected_max, static_cast<double>(m.n), m.skewness, m.kurtosis);
  return d;
}

std::vector<std::size_t> stationary_bootstrap_indices(const std::vector<std::size_t>& starts,
                                                      const std::vector<double>& uniforms, double mean_block_length) {
  const std::size_t n = starts.size();
  if (n == 0) fail("stationary_bootstrap: no observations");
  if (uniforms.size() != n) {
    fail("stationary_bootstrap: " + std::to_string(starts.size()) + " starts but " + std::to_string(uniforms.size()) +
         " uniforms (one of each per observation)");
  }
  if (!(mean_block_length >= 1.0) || !std::isfinite(mean_block_length)) {
    fail("stationary_bootstrap: the mean block length must be >= 1, got " + std::to_string(mean_block_length));
  }
  const double p = 1.0 / mean_block_length;
  std::vector<std::size_t> idx(n);
  for (std::size_t t = 0; t < n; ++t) {
    if (starts[t] >= n) {
      fail("stationary_bootstrap: start " + std::to_string(starts[t]) + " is outside [0, " + std::to_string(n) + ")");
    }
    idx[t] = t == 0 || uniforms[t] < p ? starts[t] : (idx[t - 1] + 1 == n ? 0 : idx[t - 1] + 1);
  }
  return idx;
}

std::vector<std::size_t> stationary_bootstrap_indices(std::size_t n, double mean_block_length, Generator& gen) {
  std::vector<std::size_t> starts(n);
  std::vector<double> u(n);
  for (auto& s : starts) s = static_cast<std::size_t>(gen.below(n));
  for (auto& x : u) x = gen.uniform();
  return stationary_bootstrap_indices(starts, u, mean_block_length);
}

double default_block_length(std::size_t n) { return std::max(1.0, std::ceil(std::cbrt(static_cast<double>(n)))); }

double politis_white_block_length(const std::vector<double>& x) {
  const std::size_t n = x.size();
  if (n < 16) fail("politis_white_block_length: needs at least 16 observations, got " + std::to_string(n));
  const double nd = static_cast<double>(n);
  const double mean = return_moments(x).mean;
  std::vector<double> eps(n);
  for (std::size_t i = 0; i < n; ++i) eps[i] = x[i] - mean;
  const double b_max = std::ceil(std::min(3.0 * std::sqrt(nd), nd / 3.0));
  const auto kn = static_cast<std::size_t>(std::max(5, static_cast<int>(std::log10(nd))));
  const std::size_t m_max = static_cast<std::size_t>(std::ceil(std::sqrt(nd))) + kn;
  const double cv = 2.0 * std::sqrt(std::log10(nd) / nd);
  std::vector<double> acv(m_max + 1), abs_acorr(m_max + 1);
  bool found = false;
  std::size_t opt_m = 0;
  for (std::size_t i = 0; i <= m_max; ++i) {
    // arch's normalisation: eps[i+1:] . eps[i+1:] and eps[:n-i-1] . eps[:n-i-1].
    double v1 = 0.0, v2 = 0.0, cross = 0.0;
    for (std::size_t k = i + 1; k < n; ++k) v1 += eps[k] * eps[k];
    for (std::size_t k = 0; k + i + 1 < n; ++k) v2 += eps[k] * eps[k];
    for (std::size_t k = i; k < n; ++k) cross += eps[k] * eps[k - i];
    acv[i] = cross / nd;
    abs_acorr[i] = std::abs(cross) / std::sqrt(v1 * v2);
    if (i >= kn && !found) {
      bool inside = true;
      for (std::size_t k = i - kn; k < i; ++k) inside = inside && abs_acorr[k] < cv;
      if (inside) {
        found = true;
        opt_m = i - kn;
      }
    }
  }
  const std::size_t m = std::min(found ? 2 * std::max<std::size_t>(opt_m, 1) : m_max, m_max);
  double g = 0.0, long_run = acv[0];
  for (std::size_t k = 1; k <= m; ++k) {
    const double ratio = static_cast<double>(k) / static_cast<double>(m);
    const double lambda = ratio <= 0.5 ? 1.0 : 2.0 * (1.0 - ratio);
    g += 2.0 * lambda * static_cast<double>(k) * acv[k];
    long_run += 2.0 * lambda * acv[k];
  }
  if (!(long_run > 0.0)) return std::nan("");
  const double d_sb = 2.0 * long_run * long_run;
  return std::min(std::cbrt(2.0 * g * g / d_sb) * std::cbrt(nd), b_max);
}

double automatic_block_length(const std::vector<double>& x) {
  if (x.size() < 16) return default_block_length(x.size());
  const double b = politis_white_block_length(x);
  return std::isfinite(b) ? std::max(1.0, b) : default_block_length(x.size());
}

Interval sharpe_interval_from_resamples(const std::vector<double>& returns,
                                        const std::vector<std::vector<std::size_t>>& resamples, double confidence) {
  if (!(confidence > 0.0 && confidence < 1.0)) {
    fail("sharpe_interval: confidence must lie in (0, 1), got " + std::to_string(confidence));
  }
  if (resamples.empty()) fail("sharpe_interval: no resamples");
  std::vector<double> stats;
  stats.reserve(resamples.size());
  std::vector<double> x;
  for (const auto& idx : resamples) {
    x.clear();
    for (std::size_t i : idx) {
      if (i >= returns.size()) fail("sharpe_interval: resample index " + std::to_string(i) + " is out of range");
      x.push_back(returns[i]);
    }
    stats.push_back(sharpe_ratio(x));
  }
  std::sort(stats.begin(), stats.end());
  auto percentile = [&](double q) {
    const double pos = q * static_cast<double>(stats.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, stats.size() - 1);
    return stats[lo] + (pos - static_cast<double>(lo)) * (stats[hi] - stats[lo]);
  };
  Interval out;
  out.estimate = sharpe_ratio(returns);
  out.low = percentile((1.0 - confidence) / 2.0);
  out.high = percentile((1.0 + confidence) / 2.0);
  return out;
}

Interval sharpe_bootstrap_interval(const std::vector<double>& returns, double mean_block_length, int resamples,
                                   std::uint64_t seed, double confidence) {
  if (returns.size() < 2) {
    fail("sharpe_bootstrap_interval: needs at least 2 returns, got " + std::to_string(returns.size()));
  }
  if (resamples < 10)
    fail("sharpe_bootstrap_interval: resamples must be at least 10, got " + std::to_string(resamples));
  const double block = mean_block_length > 0.0 ? mean_block_length : automatic_block_length(returns);
  Generator gen(seed);
  std::vector<std::vector<std::size_t>> draws(static_cast<std::size_t>(resamples));
  for (auto& d : draws) d = stationary_bootstrap_indices(returns.size(), block, gen);
  return sharpe_interval_from_resamples(returns, draws, confidence);
}

}  // namespace metatape::eval
