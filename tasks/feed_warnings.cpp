#include "tasks/feed_warnings.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "tasks/calendar.h"
#include "tasks/text.h"

namespace metatape::tasks {

using text::fmt;

const char* warning_name(Warning w) {
  switch (w) {
    case Warning::stale_tail:
      return "stale_tail";
    case Warning::repeated_block:
      return "repeated_block";
    case Warning::outlier_wick:
      return "outlier_wick";
    case Warning::outlier_return:
      return "outlier_return";
  }
  return "unknown";
}

namespace {

void add(LoadReport& report, const LoadOptions& options, Warning kind, std::int64_t first_line, std::int64_t last_line,
         std::int64_t rows, std::string detail) {
  const auto k = static_cast<std::size_t>(kind);
  if (report.warning_counts.size() <= k) report.warning_counts.resize(k + 1, 0);
  const std::int64_t kept_of_kind = report.warning_counts[k]++;
  if (static_cast<std::size_t>(kept_of_kind) < options.max_warnings_kept)
    report.warnings.push_back({kind, first_line, last_line, rows, std::move(detail)});
}

bool same_values(const Row& a, const Row& b) {
  return a.o == b.o && a.h == b.h && a.l == b.l && a.c == b.c && a.v == b.v;
}

std::uint64_t bits(double x) {
  if (x == 0) x = 0;  // -0 and +0 compare equal, so they must hash equal
  std::uint64_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

std::uint64_t row_hash(const Row& r) {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (double x : {r.o, r.h, r.l, r.c, r.v}) {
    h ^= bits(x) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
  }
  return h;
}

std::string duration_text(std::int64_t ms) {
  const std::int64_t a = ms < 0 ? -ms : ms;
  std::string s = ms < 0 ? "-" : "+";
  if (a % 3'600'000 == 0) return s + std::to_string(a / 3'600'000) + " h";
  if (a % 60'000 == 0) return s + std::to_string(a / 60'000) + " min";
  return s + std::to_string(a) + " ms";
}

}  // namespace

void warn_repeated_blocks(const std::vector<Row>& rows, const LoadOptions& options, LoadReport& report) {
  const std::int64_t k_rows = options.repeated_block_rows;
  const auto n = static_cast<std::int64_t>(rows.size());
  if (k_rows < 2 || n < 2 * k_rows) return;
  const auto K = static_cast<std::size_t>(k_rows);
  // Prefix counts: neighbours equal (at k: rows k-1 and k), and non-zero volumes.
  std::vector<std::int64_t> equal_prefix(rows.size() + 1, 0), volume_prefix(rows.size() + 1, 0);
  std::vector<std::uint64_t> h(rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    h[k] = row_hash(rows[k]);
    equal_prefix[k + 1] = equal_prefix[k] + (k > 0 && same_values(rows[k - 1], rows[k]) ? 1 : 0);
    volume_prefix[k + 1] = volume_prefix[k] + (rows[k].v != 0 ? 1 : 0);
  }
  auto eligible = [&](std::size_t i) {
    return equal_prefix[i + K] - equal_prefix[i + 1] == 0 && volume_prefix[i + K] - volume_prefix[i] > 0;
  };
  auto window_hash = [&](std::size_t i) {
    std::uint64_t w = 0;
    for (std::size_t q = 0; q < K; ++q) w = (w ^ h[i + q]) * 0x100000001b3ULL + q;
    return w;
  };
  std::unordered_map<std::uint64_t, std::size_t> first;
  first.reserve(rows.size());
  std::size_t i = 0;
  while (i + K <= rows.size()) {
    if (!eligible(i)) {
      ++i;
      continue;
    }
    const std::uint64_t w = window_hash(i);
    const auto [it, inserted] = first.try_emplace(w, i);
    if (inserted) {
      ++i;
      continue;
    }
    const std::size_t j = it->second;
    bool match = rows[i].t != rows[j].t;
    for (std::size_t q = 0; match && q < K; ++q) match = same_values(rows[j + q], rows[i + q]);
    if (!match) {
      ++i;
      continue;
    }
    std::size_t len = K;
    while (i + len < rows.size() && j + len < i && same_values(rows[j + len], rows[i + len])) ++len;
    std::ostringstream d;
    const bool json = rows[i].candle > 0;  // JSON rows share lines: name the candles
    d << len
      << (json ? " candles " + std::to_string(rows[i].candle) + ".." + std::to_string(rows[i + len - 1].candle)
               : std::string(" rows"))
      << " (" << calendar::iso_utc(rows[i].t) << " on) repeat " << (json ? "candles " : "lines ")
      << (json ? rows[j].candle : rows[j].line) << ".." << (json ? rows[j + len - 1].candle : rows[j + len - 1].line)
      << " value for value (open, high, low, close, volume) under timestamps shifted by "
      << duration_text(rows[i].t - rows[j].t)
      << ": the same candles stored twice (e.g. under two time-zone labels); keep one copy in the source";
    add(report, options, Warning::repeated_block, rows[i].line, rows[i + len - 1].line, static_cast<std::int64_t>(len),
        d.str());
    i += len;
  }
}

void warn_stale_tail(const std::vector<Row>& rows, const LoadOptions& options, LoadReport& report) {
  if (options.stale_tail_bars < 1 || rows.empty()) return;
  std::size_t tail = 0;
  while (tail < rows.size()) {
    const Row& r = rows[rows.size() - 1 - tail];
    if (!(r.v == 0 && r.o == r.h && r.h == r.l && r.l == r.c)) break;
    ++tail;
  }
  if (static_cast<std::int64_t>(tail) < options.stale_tail_bars) return;
  const Row& a = rows[rows.size() - tail];
  const Row& b = rows.back();
  std::ostringstream d;
  d << "the last " << tail << " bars";
  if (a.candle > 0) d << " (candles " << std::min(a.candle, b.candle) << ".." << std::max(a.candle, b.candle) << ")";
  d << " are flat (open = high = low = close";
  if (a.c == b.c) d << " = " << fmt(b.c);
  d << ") with volume 0, from " << calendar::iso_utc(a.t) << " to " << calendar::iso_utc(b.t)
    << ": the venue stopped trading or the feed froze while the clock ran on; trim them (LoadOptions::"
       "stale_tail_bars sets the length that warns)";
  add(report, options, Warning::stale_tail, std::min(a.line, b.line), std::max(a.line, b.line),
      static_cast<std::int64_t>(tail), d.str());
}

void warn_outliers(const std::vector<Row>& rows, const LoadOptions& options, LoadReport& report) {
  if (options.outlier_wick_ratio > 0) {
    for (const Row& r : rows) {
      const double up = r.h / r.c, down = r.c / r.l;
      if (!(up > options.outlier_wick_ratio || down > options.outlier_wick_ratio)) continue;
      std::ostringstream d;
      d << where(r);
      if (up > options.outlier_wick_ratio)
        d << "high " << fmt(r.h) << " is " << fmt(up) << "x the close " << fmt(r.c);
      else
        d << "low " << fmt(r.l) << " is 1/" << fmt(down) << " of the close " << fmt(r.c);
      d << " (open " << fmt(r.o) << ", high " << fmt(r.h) << ", low " << fmt(r.l)
        << "): a bad print or a unit error, kept as is; check the source (LoadOptions::outlier_wick_ratio "
        << fmt(options.outlier_wick_ratio) << ")";
      add(report, options, Warning::outlier_wick, r.line, r.line, 1, d.str());
    }
  }
  if (options.outlier_return_sigmas > 0 && rows.size() >= 30) {
    std::vector<double> ret(rows.size() - 1), nonzero;
    nonzero.reserve(ret.size());
    for (std::size_t k = 1; k < rows.size(); ++k) {
      ret[k - 1] = std::log(rows[k].c / rows[k - 1].c);
      if (ret[k - 1] != 0) nonzero.push_back(ret[k - 1]);
    }
    if (nonzero.size() < 20) return;
    auto median = [](std::vector<double> v) {
      const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
      std::nth_element(v.begin(), mid, v.end());
      return *mid;
    };
    const double med = median(nonzero);
    std::vector<double> dev(nonzero.size());
    for (std::size_t k = 0; k < nonzero.size(); ++k) dev[k] = std::fabs(nonzero[k] - med);
    const double sigma = 1.4826 * median(dev);
    if (!(sigma > 0)) return;
    for (std::size_t k = 1; k < rows.size(); ++k) {
      const double z = std::fabs(ret[k - 1] - med) / sigma;
      if (!(z > options.outlier_return_sigmas) || !(std::fabs(ret[k - 1]) >= options.outlier_return_min)) continue;
      std::ostringstream d;
      d << where(rows[k]) << "close " << fmt(rows[k - 1].c) << " -> " << fmt(rows[k].c) << ": log return "
        << fmt(ret[k - 1]) << " is " << fmt(z) << " robust standard deviations (" << fmt(sigma)
        << ") from the median return: a bad print, a unit error or a real jump, kept as is; check the "
           "source (LoadOptions::outlier_return_sigmas "
        << fmt(options.outlier_return_sigmas) << ")";
      add(report, options, Warning::outlier_return, rows[k].line, rows[k].line, 1, d.str());
    }
  }
}

}  // namespace metatape::tasks
