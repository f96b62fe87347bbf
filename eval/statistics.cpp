#include "eval/statistics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "autograd/random.h"
#include "kernels/error.h"

namespace metatape::eval {
namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

void check_sample(const std::vector<double>& values, const char* who) {
  if (values.empty()) fail(std::string(who) + ": empty sample (run at least one episode)");
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      fail(std::string(who) + ": value " + std::to_string(i) + " is not finite (" + std::to_string(values[i]) +
           "); a metric produced NaN or Inf upstream");
    }
  }
}

std::vector<double> paired_differences(const std::vector<double>& a, const std::vector<double>& b, const char* who) {
  if (a.size() != b.size()) {
    fail(std::string(who) + ": paired samples differ in length (" + std::to_string(a.size()) + " vs " +
         std::to_string(b.size()) + "); both learners must see the same episodes");
  }
  check_sample(a, who);
  check_sample(b, who);
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

double mean_of(const std::vector<double>& x) {
  return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

double sample_std(const std::vector<double>& x, double mean) {
  if (x.size() < 2) return 0.0;
  double ss = 0.0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / static_cast<double>(x.size() - 1));
}

// Continued fraction for I_x(a, b) (modified Lentz), valid and fast for x < (a + 1) / (a + b + 2).
double beta_continued_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300;
  constexpr double eps = 1e-16;
  const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 - qab * x / qap;
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < eps) return h;
  }
  fail("regularized_incomplete_beta: continued fraction did not converge for a = " + std::to_string(a) +
       ", b = " + std::to_string(b) + ", x = " + std::to_string(x));
}

}  // namespace

double log_gamma(double x) {
  if (!(x > 0.0)) fail("log_gamma: argument must be positive, got " + std::to_string(x));
  return std::lgamma(x);
}

double regularized_incomplete_beta(double a, double b, double x) {
  if (!(a > 0.0) || !(b > 0.0)) {
    fail("regularized_incomplete_beta: shape parameters must be positive, got a = " + std::to_string(a) +
         ", b = " + std::to_string(b));
  }
  if (!(x >= 0.0 && x <= 1.0)) {
    fail("regularized_incomplete_beta: x must lie in [0, 1], got " + std::to_string(x));
  }
  if (x == 0.0) return 0.0;
  if (x == 1.0) return 1.0;
  const double log_front = log_gamma(a + b) - log_gamma(a) - log_gamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(a, b, x) / a;
  return 1.0 - front * beta_continued_fraction(b, a, 1.0 - x) / b;
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double normal_quantile(double p) {
  if (!(p > 0.0 && p < 1.0)) fail("normal_quantile: p must lie in (0, 1), got " + std::to_string(p));
  // Acklam's rational approximation (relative error 1.15e-9), then one Halley step on erfc.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double p_low = 0.02425;
  double x;
  if (p < p_low) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else if (p <= 1.0 - p_low) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  } else {
    const double q = std::sqrt(-2.0 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  const double e = normal_cdf(x) - p;
  const double u = e * std::sqrt(2.0 * M_PI) * std::exp(x * x / 2.0);
  return x - u / (1.0 + x * u / 2.0);
}

double student_t_cdf(double t, double df) {
  if (!(df > 0.0)) fail("student_t_cdf: degrees of freedom must be positive, got " + std::to_string(df));
  if (std::isnan(t)) fail("student_t_cdf: t is NaN");
  if (t == inf) return 1.0;
  if (t == -inf) return 0.0;
  const double x = df / (df + t * t);
  const double tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, x);
  return t > 0.0 ? 1.0 - tail : tail;
}

double student_t_quantile(double p, double df) {
  if (!(p > 0.0 && p < 1.0)) fail("student_t_quantile: p must lie in (0, 1), got " + std::to_string(p));
  if (!(df > 0.0)) {
    fail("student_t_quantile: degrees of freedom must be positive, got " + std::to_string(df));
  }
  if (p == 0.5) return 0.0;
  // Solve for the upper tail with the symmetric form, for accuracy when p is near 1.
  const bool upper = p > 0.5;
  const double tail = upper ? 1.0 - p : p;  // P(T < -x) = tail, x > 0
  double lo = 0.0, hi = std::max(1.0, -normal_quantile(tail));
  while (student_t_cdf(-hi, df) > tail) {
    lo = hi;
    hi *= 2.0;
    if (hi > 1e300) break;
  }
  for (int i = 0; i < 300 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (student_t_cdf(-mid, df) > tail)
      lo = mid;
    else
      hi = mid;
  }
  const double x = 0.5 * (lo + hi);
  return upper ? x : -x;
}

Summary summarize(const std::vector<double>& values, double confidence) {
  check_sample(values, "summarize");
  if (!(confidence > 0.0 && confidence < 1.0)) {
    fail("summarize: confidence must lie in (0, 1), got " + std::to_string(confidence));
  }
  Summary s;
  s.n = values.size();
  s.mean = mean_of(values);
  s.std = sample_std(values, s.mean);
  s.ci_low = s.ci_high = s.mean;
  if (s.n >= 2) {
    const double half = student_t_quantile(0.5 + confidence / 2.0, static_cast<double>(s.n - 1)) * s.std /
                        std::sqrt(static_cast<double>(s.n));
    s.ci_low = s.mean - half;
    s.ci_high = s.mean + half;
  }
  return s;
}

TestResult paired_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> d = paired_differences(a, b, "paired_t_test");
  if (d.size() < 2) fail("paired_t_test: needs at least 2 pairs, got " + std::to_string(d.size()));
  const double m = mean_of(d);
  const double sd = sample_std(d, m);
  TestResult r;
  r.method = "t";
  if (sd == 0.0) {
    r.statistic = m == 0.0 ? 0.0 : (m > 0.0 ? inf : -inf);
    r.p_value = m == 0.0 ? 1.0 : 0.0;
    return r;
  }
  const double n = static_cast<double>(d.size());
  r.statistic = m / (sd / std::sqrt(n));
  r.p_value = std::min(1.0, 2.0 * student_t_cdf(-std::abs(r.statistic), n - 1.0));
  return r;
}

TestResult wilcoxon_signed_rank(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> all = paired_differences(a, b, "wilcoxon_signed_rank");
  std::vector<double> d;
  for (double v : all)
    if (v != 0.0) d.push_back(v);
  const bool had_zeros = d.size() != all.size();
  TestResult r;
  const std::size_t n = d.size();
  if (n == 0) {
    r.method = "exact";
    r.statistic = 0.0;
    r.p_value = 1.0;
    return r;
  }
  // Average ranks of |d|; tie group sizes for the variance correction.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return std::abs(d[i]) < std::abs(d[j]); });
  std::vector<double> rank(n);
  double tie_term = 0.0;
  bool has_ties = false;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && std::abs(d[order[j + 1]]) == std::abs(d[order[i]])) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;
    for (std::size_t k = i; k <= j; ++k) rank[order[k]] = avg;
    const double t = static_cast<double>(j - i + 1);
    if (t > 1) has_ties = true;
    tie_term += t * t * t - t;
    i = j + 1;
  }
  double w_plus = 0.0, w_minus = 0.0;
  for (std::size_t i = 0; i < n; ++i) (d[i] > 0 ? w_plus : w_minus) += rank[i];
  r.statistic = std::min(w_plus, w_minus);
  const double nn = static_cast<double>(n);
  if (!has_ties && !had_zeros && n <= 50) {
    r.method = "exact";
    // counts[s] = number of subsets of {1..n} whose sum is s; exact in double while 2^n < 2^53.
    const std::size_t max_sum = n * (n + 1) / 2;
    std::vector<double> counts(max_sum + 1, 0.0);
    counts[0] = 1.0;
    for (std::size_t k = 1; k <= n; ++k) {
      for (std::size_t s = max_sum; s >= k; --s) counts[s] += counts[s - k];
    }
    const double total = std::ldexp(1.0, static_cast<int>(n));
    const auto w = static_cast<std::size_t>(std::llround(w_plus));
    double cdf = 0.0, sf = 0.0;  // P(W <= w), P(W >= w)
    for (std::size_t s = 0; s <= max_sum; ++s) {
      if (s <= w) cdf += counts[s];
      if (s >= w) sf += counts[s];
    }
    r.p_value = std::min(1.0, 2.0 * std::min(cdf, sf) / total);
    return r;
  }
  r.method = "normal";
  const double mean = nn * (nn + 1.0) / 4.0;
  const double se = std::sqrt((nn * (nn + 1.0) * (2.0 * nn + 1.0) - tie_term / 2.0) / 24.0);
  double z = (w_plus - mean) / se;
  if (z > 0)
    z -= 0.5 / se;
  else if (z < 0)
    z += 0.5 / se;
  r.p_value = std::min(1.0, 2.0 * normal_cdf(-std::abs(z)));
  return r;
}

Interval bootstrap_mean_difference(const std::vector<double>& a, const std::vector<double>& b, std::uint64_t seed,
                                   int resamples, double confidence) {
  const std::vector<double> d = paired_differences(a, b, "bootstrap_mean_difference");
  if (resamples < 10)
    fail("bootstrap_mean_difference: resamples must be at least 10, got " + std::to_string(resamples));
  if (!(confidence > 0.0 && confidence < 1.0)) {
    fail("bootstrap_mean_difference: confidence must lie in (0, 1), got " + std::to_string(confidence));
  }
  Generator gen(seed);
  const std::size_t n = d.size();
  std::vector<double> means(static_cast<std::size_t>(resamples));
  for (double& m : means) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) sum += d[gen.below(n)];
    m = sum / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  // Linear interpolation between order statistics (numpy.percentile's default).
  auto percentile = [&](double q) {
    const double pos = q * static_cast<double>(means.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  Interval out;
  out.estimate = mean_of(d);
  out.low = percentile((1.0 - confidence) / 2.0);
  out.high = percentile((1.0 + confidence) / 2.0);
  return out;
}

std::vector<double> holm_adjust(const std::vector<double>& p_values) {
  const std::size_t m = p_values.size();
  for (std::size_t i = 0; i < m; ++i) {
    if (!(p_values[i] >= 0.0 && p_values[i] <= 1.0)) {
      fail("holm_adjust: p-value " + std::to_string(i) + " is " + std::to_string(p_values[i]) + ", outside [0, 1]");
    }
  }
  std::vector<std::size_t> order(m);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return p_values[i] < p_values[j]; });
  std::vector<double> adjusted(m);
  double running = 0.0;
  for (std::size_t k = 0; k < m; ++k) {
    running = std::max(running, std::min(1.0, static_cast<double>(m - k) * p_values[order[k]]));
    adjusted[order[k]] = running;
  }
  return adjusted;
}

double paired_cohens_d(const std::vector<double>& a, const std::vector<double>& b) {
  const std::vector<double> d = paired_differences(a, b, "paired_cohens_d");
  const double m = mean_of(d);
  const double sd = sample_std(d, m);
  if (sd == 0.0) return m == 0.0 ? 0.0 : (m > 0.0 ? inf : -inf);
  return m / sd;
}

}  // namespace metatape::eval
