// The raw-window feature set (`features: raw_window`): row t of the feature matrix is the last W bars
// t-W+1 .. t (past data only) as kRawChannels channels, flattened channel-major:
//
//   value[c * W + j] = channel c at bar t - (W - 1) + j      (j = 0 the oldest bar, j = W-1 bar t)
//
// so a model can reshape a row to (channels, W) and a Task keeps its (rows, features) layout.
//
// Channels of bar u (r_u = log(close_u / close_{u-1}), the close-to-close log return):
//   0 "ret"     r_u / s_t
//   1 "high"    log(high_u / close_u) / s_t      (>= 0)
//   2 "low"     log(low_u / close_u) / s_t       (<= 0)
//   3 "open"    log(open_u / close_u) / s_t
//   4 "volume"  log1p(volume_u) - mean over the window of log1p(volume)
//
// Per-window normalisation, from the window itself only (no fitted statistics, nothing after bar t):
//   s_t = root mean square of the window's 4W price values (channels 0-3 before scaling). Every price
//   channel is divided by s_t, so a window is scale-free and |price value| <= sqrt(4W); when s_t <
//   1e-12 (every bar of the window flat at one price) the price channels are 0. The volume channel is
//   centred only (log units, unscaled); zero volume is log1p(0) = 0. Every value is finite.
// The window is scale-free: the absolute volatility and volume levels are divided out; what remains
// is the shape of the last W bars relative to each other.
//
// warmup = W: the oldest return of the first complete row (t = W) reads close_0. Rows before warmup
// are 0 (and never used by task families).
//
// Task families do not apply the support-fitted Normalizer (tasks/families.h) to raw windows: the
// per-window normalisation already makes rows comparable across assets and periods, and a per-column
// z-score fitted on a small support set would give each time step of a channel its own scale, which
// breaks the weight sharing over time of a convolution (nn/temporal_encoder.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/series.h"

namespace metatape::tasks {

inline constexpr std::int64_t kRawChannels = 5;

struct RawWindowConfig {
  std::int64_t length = 32;  // W, bars per window (>= 2)

  std::int64_t count() const { return kRawChannels * length; }
  // "ret_t-31", ..., "ret_t-0", "high_t-31", ... in the column order above.
  std::vector<std::string> names() const;
  std::int64_t warmup() const { return length; }
  // Throws naming the option `raw_window.length` when length < 2.
  void check() const;
};

// Channel names in order: ret, high, low, open, volume.
const std::vector<std::string>& raw_channel_names();

// Writes row t (count() values, the layout above) to out. Requires warmup() <= t < series.size().
void raw_window_row(const Series& series, std::int64_t t, const RawWindowConfig& config, double* out);

}  // namespace metatape::tasks
