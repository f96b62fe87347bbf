// Inference on Sharpe ratios of one return stream: the per-period Sharpe ratio, the probabilistic
// Sharpe ratio (PSR), the expected maximum Sharpe ratio of N trials, the deflated Sharpe ratio (DSR,
// Bailey and Lopez de Prado 2014, "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
// Overfitting and Non-Normality", J. Portfolio Management 40(5)) and the stationary block bootstrap
// (Politis and Romano 1994) with a percentile interval of the Sharpe ratio.
//
// Units: every Sharpe ratio here is PER PERIOD of the stream given (mean / sd, not annualised); the
// trial Sharpe ratios, their variance and the expected maximum must be in the same per-period unit.
// Callers annualise for display only (eval/walk_forward.h: daily returns, sqrt(365)).
//
// Checked against independent values: the paper's numerical example (N = 100, V = 1/2 annualised,
// T = 1250, skew -3, kurtosis 10, SR = 2.5 annualised -> E[max] = 0.1132 per day, DSR = 0.9004) and a
// numpy / scipy / arch fixture (tests/data/sharpe_inference_fixture.json, made by
// scripts/make_sharpe_fixture.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "autograd/random.h"
#include "eval/statistics.h"

namespace metatape::eval {

inline constexpr double kEulerMascheroni = 0.57721566490153286061;

// Moments of a sample. sd uses the n - 1 denominator (as the Sharpe ratio); skewness and kurtosis are
// the biased moment estimators m3 / m2^1.5 and m4 / m2^2 (scipy.stats.skew and
// scipy.stats.kurtosis(fisher=False), bias=True), kurtosis NOT in excess (normal: 3). A constant
// sample (spread below 1e-12 of |mean|: rounding) has sd 0, skewness 0 and kurtosis 3 (the normal
// values, so the PSR denominator stays 1).
struct ReturnMoments {
  std::size_t n = 0;
  double mean = 0.0, sd = 0.0, skewness = 0.0, kurtosis = 3.0;
};
// Throws on an empty sample or a non-finite value.
ReturnMoments return_moments(const std::vector<double>& returns);

// mean / sd (n - 1 denominator); 0 when n < 2 or sd = 0.
double sharpe_ratio(const std::vector<double>& returns);

// PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)): the
// probability that the true Sharpe ratio exceeds SR* given the estimate SR from n observations.
// Needs n >= 2. The denominator's radicand is clamped at 1e-12 (it is positive for every finite
// sample, since kurtosis >= 1 + skew^2, but rounding may bring it to 0).
double probabilistic_sharpe_ratio(double sharpe, double benchmark_sharpe, double n, double skewness, double kurtosis);

// E[max_n SR_n] ~= mean + sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e))), g the
// Euler-Mascheroni constant, for N independent trials whose Sharpe ratios have variance V. N = 1 gives
// `mean` (no selection). Throws when N < 1 or V < 0.
double expected_maximum_sharpe(std::int64_t trials, double trial_variance, double mean = 0.0);

// Sample variance (n - 1) of the trials' Sharpe ratios (same per-period unit); 0 with fewer than two.
double trial_sharpe_variance(const std::vector<double>& trial_sharpes);

struct DeflatedSharpe {
  double sharpe = 0.0;        // per period, of the stream
  double expected_max = 0.0;  // SR0: expected maximum Sharpe of the trials (per period)
  double dsr = 0.0;           // PSR(SR0) in [0, 1]
  std::int64_t trials = 1;
  double trial_variance = 0.0;
  std::size_t n = 0;
  double skewness = 0.0, kurtosis = 3.0;
};
// DSR = PSR(SR0) with SR0 = expected_maximum_sharpe(trials, trial_variance): the probability that the
// stream's true Sharpe ratio exceeds what the best of `trials` skill-less trials would show. Needs at
// least two returns.
DeflatedSharpe deflated_sharpe_ratio(const std::vector<double>& returns, std::int64_t trials, double trial_variance);

// ---- stationary bootstrap --------------------------------------------------------------------------
// Politis and Romano (1994): blocks start at uniform random positions and have geometric lengths with
// mean `mean_block_length` (wrapping circularly). Given n candidate starts (each in [0, n)) and n
// uniforms in [0, 1): index[0] = starts[0]; for t >= 1, index[t] = starts[t] when u[t] < 1 / L (a new
// block), else index[t - 1] + 1 mod n. This is arch's stationary_bootstrap_sample, fed the same two
// streams (arch.bootstrap.StationaryBootstrap).
std::vector<std::size_t> stationary_bootstrap_indices(const std::vector<std::size_t>& starts,
                                                      const std::vector<double>& uniforms, double mean_block_length);
// The same with starts = gen.below(n) and uniforms = gen.uniform() (n of each, starts first).
std::vector<std::size_t> stationary_bootstrap_indices(std::size_t n, double mean_block_length, Generator& gen);
// ceil(n^(1/3)) (at least 1): the rate-optimal order of the block length (Politis and White 2004);
// the fallback of automatic_block_length.
double default_block_length(std::size_t n);
// Politis and White (2004) with the correction of Patton, Politis and White (2009): the estimated
// optimal mean block length of the stationary bootstrap, b = (2 g^2 / d)^(1/3) n^(1/3), capped at
// ceil(min(3 sqrt(n), n / 3)), with the flat-top lag window and the lag choice of arch's
// optimal_block_length (first run of max(5, log10 n) autocorrelations inside +-2 sqrt(log10(n) / n);
// m = 2 max(that lag, 1), at most ceil(sqrt(n)) + max(5, log10 n)). Equal to arch's b_sb. Needs n >= 16
// (the lags need that many observations); may be below 1 (weak dependence); NaN when the long-run
// variance estimate is not positive (a constant series).
double politis_white_block_length(const std::vector<double>& x);
// The block length the Sharpe interval uses when none is configured: politis_white_block_length
// clamped to at least 1, or default_block_length(n) when n < 16 or the estimate is undefined.
double automatic_block_length(const std::vector<double>& x);

// Percentile interval (numpy.percentile's linear interpolation) of the per-period Sharpe ratio over
// the given resamples (each a list of indices into `returns`); estimate = sharpe_ratio(returns).
Interval sharpe_interval_from_resamples(const std::vector<double>& returns,
                                        const std::vector<std::vector<std::size_t>>& resamples,
                                        double confidence = 0.95);
// `resamples` stationary-bootstrap resamples drawn from Generator(seed), then the interval above.
// mean_block_length <= 0 selects automatic_block_length(returns). Needs n >= 2 and resamples >= 10.
Interval sharpe_bootstrap_interval(const std::vector<double>& returns, double mean_block_length, int resamples,
                                   std::uint64_t seed, double confidence = 0.95);

}  // namespace metatape::eval
