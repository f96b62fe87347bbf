// Features computed strictly from the past: row t of the matrix uses bars 0..t only (the bar at t is
// closed at decision time; labels look at bars t+1..t+h). Rows before warmup() are incomplete and are
// never used by task families.
//
// Default set (50 columns): log returns at lags 1,2,3,5,8,13,21,34,55 (9); realised volatility at
// windows 5,10,20,40,80 (5); RSI 7,14,28 (3); MACD line, signal, histogram for (12,26,9) and
// (5,35,5) (6); Bollinger %B at 10,20,40 (3); ATR/close at 7,14,28 (3); stochastic %K at 7,14,28 and
// %D of the 14 (4); volume z-score at 10,20,50 (3); high-low range / close now and mean over 5,20
// (3); return skewness at 20,60 (2); return kurtosis at 20,60 (2); price z-score vs SMA 10,20,50 (3);
// log(SMA ratio) 5/20 and 20/50 (2); up-bar fraction 10,20 (2).
//
// The other set, raw windows (FeatureSet::raw_window): row t is the last W bars as 5 normalised
// channels, flattened channel-major (tasks/raw_window.h). FeatureConfig::set picks one; count(),
// names(), warmup() and compute_features follow it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tasks/raw_window.h"
#include "tasks/series.h"

namespace metatape::tasks {

enum class FeatureSet {
  indicators,  // the hand-made indicator columns below (50 by default)
  raw_window,  // the last raw_window.length bars as channels (tasks/raw_window.h)
};
// "indicators" | "raw_window"; throws naming the option `features` and the choices.
FeatureSet parse_feature_set(const std::string& name);
std::string feature_set_name(FeatureSet set);

struct FeatureConfig {
  FeatureSet set = FeatureSet::indicators;
  RawWindowConfig raw_window;  // used when set == raw_window; the lists below when set == indicators

  std::vector<int> return_lags = {1, 2, 3, 5, 8, 13, 21, 34, 55};
  std::vector<int> vol_windows = {5, 10, 20, 40, 80};
  std::vector<int> rsi_periods = {7, 14, 28};
  std::vector<std::array<int, 3>> macd = {{12, 26, 9}, {5, 35, 5}};
  std::vector<int> bollinger_windows = {10, 20, 40};
  std::vector<int> atr_periods = {7, 14, 28};
  std::vector<int> stochastic_periods = {7, 14, 28};  // plus %D (3-bar mean of %K) of the middle one
  std::vector<int> volume_z_windows = {10, 20, 50};
  std::vector<int> range_windows = {1, 5, 20};
  std::vector<int> skew_windows = {20, 60};
  std::vector<int> kurtosis_windows = {20, 60};
  std::vector<int> price_z_windows = {10, 20, 50};
  std::vector<std::array<int, 2>> sma_ratios = {{5, 20}, {20, 50}};
  std::vector<int> up_fraction_windows = {10, 20};

  bool is_raw_window() const { return set == FeatureSet::raw_window; }
  std::int64_t count() const;  // number of columns (50 for the default, 5 * W for raw windows)
  std::vector<std::string> names() const;
  std::int64_t warmup() const;  // first row with every feature defined
};

// Row-major (rows = series.size(), cols = config.count()); rows < warmup are 0 (and invalid).
struct FeatureMatrix {
  std::int64_t rows = 0, cols = 0, warmup = 0;
  std::vector<double> values;
  std::vector<std::string> names;
  double at(std::int64_t r, std::int64_t c) const { return values[static_cast<std::size_t>(r * cols + c)]; }
  const double* row(std::int64_t r) const { return values.data() + r * cols; }
};

// All values are finite (degenerate windows, e.g. a flat price, give 0 rather than NaN).
FeatureMatrix compute_features(const Series& series, const FeatureConfig& config = {});

// Per-column mean and standard deviation fitted on given rows only (the support set); apply() maps
// x -> clamp((x - mean) / std, -clip, clip). A column with std < 1e-12 maps to 0.
struct Normalizer {
  std::vector<double> mean, stddev;
  double clip = 8.0;
  static Normalizer fit(const std::vector<const double*>& rows, std::int64_t cols);
  void apply(const double* in, float* out, std::int64_t cols) const;
};

// The look-ahead guard. `features` maps a series to a matrix whose row t may depend on bars 0..t
// only. The guard recomputes the matrix on the series truncated after row t, for each t in `rows`,
// and throws Error naming the first row and column whose value changed (tolerance 1e-9 relative).
// Passing is evidence of causality for those rows.
using FeatureFunction = std::function<FeatureMatrix(const Series&)>;
void check_no_lookahead(const Series& series, const FeatureFunction& features, const std::vector<std::int64_t>& rows);

}  // namespace metatape::tasks
