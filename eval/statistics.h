// Statistics for honest comparisons: summaries with t-based confidence intervals, paired tests
// (t-test, Wilcoxon signed-rank), a seeded bootstrap interval of the mean difference, Holm's
// step-down correction and a paired effect size. The special functions (regularised incomplete beta,
// Student-t CDF and quantile, normal CDF and quantile) are implemented here, not taken from a library.
//
// Conventions: every test is two-sided; "a versus b" tests the paired differences d = a - b, so a
// positive statistic or mean difference means a is larger. Degenerate inputs never give NaN: they
// give the documented limit (see each function).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace metatape::eval {

// ---- special functions ------------------------------------------------------------------------------
double log_gamma(double x);                                        // x > 0
double regularized_incomplete_beta(double a, double b, double x);  // I_x(a, b), a, b > 0, x in [0, 1]
double normal_cdf(double z);
double normal_quantile(double p);                // p in (0, 1)
double student_t_cdf(double t, double df);       // df > 0; t may be +-inf
double student_t_quantile(double p, double df);  // p in (0, 1), df > 0

// ---- summaries --------------------------------------------------------------------------------------
struct Summary {
  std::size_t n = 0;
  double mean = 0.0;
  double std = 0.0;     // sample standard deviation (n - 1 denominator); 0 when n < 2
  double ci_low = 0.0;  // mean -+ t_{(1+c)/2, n-1} * std / sqrt(n); equal to mean when n < 2
  double ci_high = 0.0;
};
// Throws on an empty sample or a non-finite value.
Summary summarize(const std::vector<double>& values, double confidence = 0.95);

// ---- paired tests -----------------------------------------------------------------------------------
struct TestResult {
  double statistic = 0.0;
  double p_value = 1.0;
  const char* method = "";  // "t", "exact" or "normal"
};

// Paired t-test on d = a - b (scipy.stats.ttest_rel). statistic = mean(d) / (sd(d) / sqrt(n)),
// df = n - 1. Degenerate: all d equal to zero -> statistic 0, p 1; d constant and nonzero ->
// statistic +-inf, p 0. Needs n >= 2.
TestResult paired_t_test(const std::vector<double>& a, const std::vector<double>& b);

// Wilcoxon signed-rank test on d = a - b, zeros dropped (Wilcoxon's method), average ranks for ties.
// statistic = min(W+, W-) (scipy's two-sided convention). p-value: exact null distribution when
// there are no ties, no zeros and at most 50 pairs (method "exact"); otherwise the normal
// approximation with tie-corrected variance and continuity correction (method "normal").
// scipy.stats.wilcoxon(a, b, method="exact"|"asymptotic", correction=True) gives the same numbers.
// All d zero -> statistic 0, p 1.
TestResult wilcoxon_signed_rank(const std::vector<double>& a, const std::vector<double>& b);

struct Interval {
  double estimate = 0.0;
  double low = 0.0;
  double high = 0.0;
};
// Percentile bootstrap interval of mean(a - b): `resamples` resamples of the paired differences with
// replacement, drawn from metatape::Generator(seed). Same seed, same interval.
Interval bootstrap_mean_difference(const std::vector<double>& a, const std::vector<double>& b, std::uint64_t seed,
                                   int resamples = 2000, double confidence = 0.95);

// Holm's step-down adjusted p-values, in the input order: sort ascending, adjusted_(i) =
// max_{j <= i} min(1, (m - j) p_(j)) with j counted from 0. Reject where adjusted < alpha.
std::vector<double> holm_adjust(const std::vector<double>& p_values);

// Cohen's d for paired samples (d_z): mean(a - b) / sd(a - b). 0 when all differences are zero;
// +-inf when they are constant and nonzero.
double paired_cohens_d(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace metatape::eval
