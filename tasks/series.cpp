#include "tasks/series.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "kernels/error.h"

namespace metatape::tasks {

std::string Series::label() const { return symbol + "@" + exchange + (interval.empty() ? "" : " " + interval); }

void Series::reserve(std::size_t n) {
  time_ms.reserve(n);
  open.reserve(n);
  high.reserve(n);
  low.reserve(n);
  close.reserve(n);
  volume.reserve(n);
  filled.reserve(n);
}

void Series::push_back(std::int64_t t, double o, double h, double l, double c, double v, bool was_filled) {
  time_ms.push_back(t);
  open.push_back(o);
  high.push_back(h);
  low.push_back(l);
  close.push_back(c);
  volume.push_back(v);
  filled.push_back(was_filled ? 1 : 0);
}

Series Series::slice(std::int64_t begin, std::int64_t end) const {
  if (begin < 0 || end > size() || begin > end)
    fail("series " + label() + ": slice [" + std::to_string(begin) + ", " + std::to_string(end) +
         ") out of range for " + std::to_string(size()) + " rows");
  Series out;
  out.symbol = symbol;
  out.exchange = exchange;
  out.interval = interval;
  out.interval_ms = interval_ms;
  out.fee_rate = fee_rate;
  auto cut = [&](const auto& v) { return std::decay_t<decltype(v)>(v.begin() + begin, v.begin() + end); };
  out.time_ms = cut(time_ms);
  out.open = cut(open);
  out.high = cut(high);
  out.low = cut(low);
  out.close = cut(close);
  out.volume = cut(volume);
  out.filled = cut(filled);
  return out;
}

void Series::check() const {
  const std::size_t n = time_ms.size();
  if (open.size() != n || high.size() != n || low.size() != n || close.size() != n || volume.size() != n ||
      filled.size() != n)
    fail("series " + label() + ": column lengths differ (time has " + std::to_string(n) + " rows)");
  for (std::size_t i = 0; i < n; ++i) {
    const std::string where = "series " + label() + ": row " + std::to_string(i) + ": ";
    if (i > 0 && time_ms[i] <= time_ms[i - 1]) fail(where + "times not strictly increasing");
    const double o = open[i], h = high[i], l = low[i], c = close[i], v = volume[i];
    if (!(std::isfinite(o) && std::isfinite(h) && std::isfinite(l) && std::isfinite(c) && std::isfinite(v)))
      fail(where + "non-finite value");
    if (!(o > 0 && h > 0 && l > 0 && c > 0)) fail(where + "non-positive price");
    if (h < std::max(o, c) || l > std::min(o, c)) fail(where + "high/low outside the open/close envelope");
    if (v < 0) fail(where + "negative volume");
  }
}

std::int64_t Market::interval_ms() const { return series.empty() ? 0 : series.front().interval_ms; }

int Market::find(const std::string& symbol, const std::string& exchange) const {
  for (std::size_t i = 0; i < series.size(); ++i)
    if (series[i].symbol == symbol && (exchange.empty() || series[i].exchange == exchange)) return static_cast<int>(i);
  return -1;
}

std::vector<std::string> Market::symbols() const {
  std::vector<std::string> out;
  for (const Series& s : series)
    if (std::find(out.begin(), out.end(), s.symbol) == out.end()) out.push_back(s.symbol);
  return out;
}

std::vector<std::string> Market::exchanges_of(const std::string& symbol) const {
  std::vector<std::string> out;
  for (const Series& s : series)
    if (s.symbol == symbol) out.push_back(s.exchange);
  return out;
}

std::vector<int> Market::series_of(const std::string& symbol) const {
  std::vector<int> out;
  for (std::size_t i = 0; i < series.size(); ++i)
    if (series[i].symbol == symbol) out.push_back(static_cast<int>(i));
  return out;
}

Market align(std::vector<Series> series, AlignMode mode) {
  if (series.empty()) fail("align: no series given");
  for (const Series& s : series) {
    if (s.empty()) fail("align: series " + s.label() + " is empty");
    if (s.interval_ms != series.front().interval_ms)
      fail("align: series " + s.label() + " has bar interval " + std::to_string(s.interval_ms) + " ms but " +
           series.front().label() + " has " + std::to_string(series.front().interval_ms) +
           " ms (resample or load the same interval)");
  }
  Market m;
  if (mode == AlignMode::intersect) {
    std::vector<std::int64_t> common = series.front().time_ms;
    for (std::size_t k = 1; k < series.size(); ++k) {
      std::vector<std::int64_t> next;
      std::set_intersection(common.begin(), common.end(), series[k].time_ms.begin(), series[k].time_ms.end(),
                            std::back_inserter(next));
      common.swap(next);
    }
    if (common.empty()) fail("align: the series share no bar time (their ranges do not overlap)");
    m.time_ms = common;
  } else {
    std::int64_t lo = std::numeric_limits<std::int64_t>::min(), hi = std::numeric_limits<std::int64_t>::max();
    for (const Series& s : series) {
      lo = std::max(lo, s.time_ms.front());
      hi = std::min(hi, s.time_ms.back());
    }
    if (lo > hi) fail("align: the series' time ranges do not overlap");
    std::set<std::int64_t> all;
    for (const Series& s : series)
      for (std::int64_t t : s.time_ms)
        if (t >= lo && t <= hi) all.insert(t);
    m.time_ms.assign(all.begin(), all.end());
  }
  for (Series& s : series) {
    Series out;
    out.symbol = s.symbol;
    out.exchange = s.exchange;
    out.interval = s.interval;
    out.interval_ms = s.interval_ms;
    out.fee_rate = s.fee_rate;
    out.reserve(m.time_ms.size());
    std::size_t j = 0;
    for (std::int64_t t : m.time_ms) {
      while (j < s.time_ms.size() && s.time_ms[j] < t) ++j;
      if (j < s.time_ms.size() && s.time_ms[j] == t) {
        out.push_back(t, s.open[j], s.high[j], s.low[j], s.close[j], s.volume[j], s.filled[j] != 0);
      } else {
        // forward_fill mode only: t lies after this series' first bar, so j > 0.
        const double c = s.close[j - 1];
        out.push_back(t, c, c, c, c, 0.0, true);
      }
    }
    m.series.push_back(std::move(out));
  }
  return m;
}

void write_csv(const Series& series, const std::string& path) {
  std::ofstream out(path);
  if (!out) fail("write_csv: cannot open " + path + " for writing (check the directory exists)");
  out << "time_ms,open,high,low,close,volume\n";
  out.precision(17);
  for (std::int64_t i = 0; i < series.size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    out << series.time_ms[k] << ',' << series.open[k] << ',' << series.high[k] << ',' << series.low[k] << ','
        << series.close[k] << ',' << series.volume[k] << '\n';
  }
  if (!out) fail("write_csv: write to " + path + " failed (disk full?)");
}

}  // namespace metatape::tasks
