#include "tasks/raw_window.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"

namespace metatape::tasks {

namespace {
double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }
}  // namespace

const std::vector<std::string>& raw_channel_names() {
  static const std::vector<std::string> names = {"ret", "high", "low", "open", "volume"};
  return names;
}

std::vector<std::string> RawWindowConfig::names() const {
  std::vector<std::string> n;
  n.reserve(static_cast<std::size_t>(count()));
  for (const std::string& channel : raw_channel_names())
    for (std::int64_t j = 0; j < length; ++j) n.push_back(channel + "_t-" + std::to_string(length - 1 - j));
  return n;
}

void RawWindowConfig::check() const {
  if (length < 2)
    fail("raw_window: raw_window.length is " + std::to_string(length) +
         ", it must be >= 2 bars (e.g. raw_window.length: 32)");
}

void raw_window_row(const Series& s, std::int64_t t, const RawWindowConfig& config, double* out) {
  const std::int64_t W = config.length;
  if (t < config.warmup() || t >= s.size())
    fail("raw_window_row: row " + std::to_string(t) + " is outside the complete rows [" +
         std::to_string(config.warmup()) + ", " + std::to_string(s.size()) + ")");
  double sq = 0, volume_mean = 0;
  for (std::int64_t j = 0; j < W; ++j) {
    const auto u = static_cast<std::size_t>(t - (W - 1) + j);
    const double close = s.close[u];
    const double v[5] = {std::log(close / s.close[u - 1]), std::log(s.high[u] / close), std::log(s.low[u] / close),
                         std::log(s.open[u] / close), std::log1p(std::max(0.0, s.volume[u]))};
    for (std::int64_t c = 0; c < kRawChannels; ++c) out[c * W + j] = finite_or_zero(v[c]);
    for (std::int64_t c = 0; c < 4; ++c) sq += out[c * W + j] * out[c * W + j];
    volume_mean += out[4 * W + j];
  }
  const double scale = std::sqrt(sq / static_cast<double>(4 * W));
  volume_mean /= static_cast<double>(W);
  for (std::int64_t j = 0; j < W; ++j) {
    for (std::int64_t c = 0; c < 4; ++c) out[c * W + j] = scale < 1e-12 ? 0.0 : out[c * W + j] / scale;
    out[4 * W + j] -= volume_mean;
  }
}

}  // namespace metatape::tasks
