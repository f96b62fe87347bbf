#include <doctest/doctest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "tasks/loaders.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {

constexpr std::int64_t kT0 = 1'609'459'200'000;  // 2021-01-01
constexpr std::int64_t kHour = 3'600'000;

// A deterministic, non-repeating hourly random walk: row k of a header CSV.
std::string row(std::int64_t t, double o, double h, double l, double c, double v) {
  std::ostringstream s;
  s.precision(12);
  s << t << "," << o << "," << h << "," << l << "," << c << "," << v << "\n";
  return s.str();
}

struct Walk {
  double price = 100;
  std::uint64_t state = 12345;
  double uniform() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0;
  }
  // The next candle at time t (line numbers: header is line 1).
  std::string next(std::int64_t t) {
    const double o = price;
    price *= std::exp(0.01 * (uniform() - 0.5));
    const double c = price;
    return row(t, o, std::max(o, c) * (1 + 0.002 * uniform()), std::min(o, c) * (1 - 0.002 * uniform()), c,
               10 + 5 * uniform());
  }
};

const std::string kHeader = "timestamp,open,high,low,close,volume\n";

std::string clean(int n, Walk& w, std::int64_t t0 = kT0) {
  std::string s;
  for (int k = 0; k < n; ++k) s += w.next(t0 + k * kHour);
  return s;
}

}  // namespace

TEST_CASE("feed warnings: a clean file raises none") {
  Walk w;
  const LoadResult r = parse_series(kHeader + clean(200, w), "Binance_BTCUSDT_1h.csv");
  CHECK(r.report.warnings.empty());
  CHECK(r.report.warnings_summary().empty());
  CHECK(r.report.repairs_summary().empty());
}

TEST_CASE("feed warnings: a flat zero-volume tail is reported, not refused, naming the rows") {
  Walk w;
  std::string text = kHeader + clean(50, w);
  const double p = 123.25;
  for (int k = 0; k < 6; ++k) text += row(kT0 + (50 + k) * kHour, p, p, p, p, 0);
  const LoadResult r = parse_series(text, "Binance_BTCUSDT_1h.csv");  // policy fail: still loads
  CHECK(r.series.size() == 56);
  REQUIRE(r.report.count(Warning::stale_tail) == 1);
  const LoadWarning& x = r.report.warnings.front();
  CHECK(x.kind == Warning::stale_tail);
  CHECK(x.first_line == 52);
  CHECK(x.last_line == 57);
  CHECK(x.rows == 6);
  CHECK(x.detail.find("last 6 bars are flat") != std::string::npos);
  CHECK(x.detail.find("123.25") != std::string::npos);
  CHECK(x.detail.find("from 2021-01-03 02:00 UTC to 2021-01-03 07:00 UTC") != std::string::npos);
  CHECK(r.report.warnings_summary().find("Binance_BTCUSDT_1h.csv: lines 52..57: stale_tail:") != std::string::npos);
  // Shorter than stale_tail_bars: no warning; a flat bar with volume is not stale.
  std::string short_tail = kHeader + clean(50, w);
  for (int k = 0; k < 4; ++k) short_tail += row(kT0 + (50 + k) * kHour, p, p, p, p, 0);
  CHECK(parse_series(short_tail, "x.csv").report.count(Warning::stale_tail) == 0);
  std::string traded = kHeader + clean(50, w);
  for (int k = 0; k < 6; ++k) traded += row(kT0 + (50 + k) * kHour, p, p, p, p, k == 3 ? 1.0 : 0.0);
  CHECK(parse_series(traded, "x.csv").report.count(Warning::stale_tail) == 0);
}

TEST_CASE("feed warnings: a block of candles repeated under other timestamps is reported") {
  // 30 candles, then the same 12 candles (rows 10..21) again, labelled 3 hours later than the end:
  // what a venue's export under two time-zone labels looks like once concatenated.
  Walk w;
  std::vector<std::string> rows;
  std::string body;
  for (int k = 0; k < 30; ++k) {
    rows.push_back(w.next(kT0 + k * kHour));
    body += rows.back();
  }
  const std::int64_t shift = 33 * kHour;
  for (int k = 10; k < 22; ++k) {
    const std::string& r = rows[static_cast<std::size_t>(k)];
    const std::int64_t t = std::stoll(r.substr(0, r.find(','))) + shift;
    body += std::to_string(t) + r.substr(r.find(','));
  }
  const LoadResult r = parse_series(kHeader + body, "Binance_BTCUSDT_1h.csv");
  REQUIRE(r.report.count(Warning::repeated_block) == 1);
  const LoadWarning& x = r.report.warnings.front();
  CHECK(x.kind == Warning::repeated_block);
  CHECK(x.first_line == 32);
  CHECK(x.last_line == 43);
  CHECK(x.rows == 12);
  CHECK(x.detail.find("repeat lines 12..23") != std::string::npos);
  CHECK(x.detail.find("+33 h") != std::string::npos);
  // Seven repeated rows are below repeated_block_rows (8): no warning.
  std::string short_body;
  for (int k = 0; k < 30; ++k) short_body += rows[static_cast<std::size_t>(k)];
  for (int k = 10; k < 17; ++k) {
    const std::string& s = rows[static_cast<std::size_t>(k)];
    short_body += std::to_string(std::stoll(s.substr(0, s.find(','))) + shift) + s.substr(s.find(','));
  }
  CHECK(parse_series(kHeader + short_body, "x.csv").report.count(Warning::repeated_block) == 0);
  // A frozen feed (identical neighbours) is not a repeated block.
  std::string frozen = kHeader + clean(20, w);
  for (int k = 0; k < 20; ++k) frozen += row(kT0 + (20 + k) * kHour, 50, 50, 50, 50, 0);
  frozen += clean(5, w, kT0 + 40 * kHour);
  CHECK(parse_series(frozen, "x.csv").report.count(Warning::repeated_block) == 0);
}

TEST_CASE("feed warnings: a wick 38,000x the close and a return far out of the distribution") {
  Walk w;
  std::string text = kHeader + clean(40, w);
  text += row(kT0 + 40 * kHour, w.price, w.price * 38000, w.price * 0.999, w.price, 12);  // line 42
  text += clean(40, w, kT0 + 41 * kHour);
  LoadOptions repair;
  repair.policy = ValidationPolicy::repair;
  const LoadResult r = parse_series(text, "Binance_BTCUSDT_1h.csv", repair);
  CHECK(r.series.size() == 81);
  REQUIRE(r.report.count(Warning::outlier_wick) == 1);
  CHECK(r.report.warnings.front().first_line == 42);
  CHECK(r.report.warnings.front().detail.find("is 38000x the close") != std::string::npos);
  CHECK(r.report.count(Warning::outlier_return) == 0);  // the close itself is ordinary

  // One close 10x its neighbours: two returns (up and back) are out of the distribution.
  std::string jump = kHeader + clean(40, w);
  const double p = w.price;
  jump += row(kT0 + 40 * kHour, p, p * 10, p, p * 10, 12);  // line 42
  jump += row(kT0 + 41 * kHour, p * 10, p * 10, p, p, 12);  // line 43
  jump += clean(40, w, kT0 + 42 * kHour);
  const LoadResult j = parse_series(jump, "Binance_BTCUSDT_1h.csv");
  REQUIRE(j.report.count(Warning::outlier_return) == 2);
  std::vector<std::int64_t> lines;
  for (const LoadWarning& x : j.report.warnings)
    if (x.kind == Warning::outlier_return) lines.push_back(x.first_line);
  CHECK(lines == std::vector<std::int64_t>{42, 43});
  // Off when the threshold is 0.
  LoadOptions off;
  off.outlier_return_sigmas = 0;
  off.outlier_wick_ratio = 0;
  CHECK(parse_series(jump, "x.csv", off).report.warnings.empty());
}

TEST_CASE("repair reports how many rows of each defect it repaired, and how") {
  const std::string text = kHeader +
                           "1609459200000,100,101,99,100.5,10\n"
                           "1609462800000,100.5,100.6,100,101,12\n"  // high below close
                           "1609466400000,101,103,101.5,102,11\n"    // low above open
                           "1609466400000,101,103,100.5,102,11\n"    // duplicate time, next to its twin
                           "1609470000000,102,101,100,101.5,11\n"    // high below open
                           "1609462800000,101,103,100.5,102,11\n"    // duplicate time, out of order
                           "1609473600000,101.5,103,101,102,11\n"
                           "1609477200000,102,103,101,102,11\n";
  LoadOptions repair;
  repair.policy = ValidationPolicy::repair;
  const LoadResult r = parse_series(text, "Binance_BTCUSDT_1h.csv", repair);
  CHECK(r.report.repaired(Defect::high_below_open_close) == 2);
  CHECK(r.report.repaired(Defect::low_above_open_close) == 1);
  // The out-of-order duplicate is reported twice: sorted, then dropped as a repeat of line 3.
  CHECK(r.report.repaired(Defect::duplicate_timestamp) == 2);
  CHECK(r.report.repaired(Defect::non_monotonic_timestamp) == 1);
  CHECK(r.report.rows_dropped == 2);
  CHECK(r.series.size() == 6);
  const std::string s = r.report.repairs_summary();
  CHECK(s.find("high_below_open_close: 2 rows (repaired: high = max(open, high, low, close))") != std::string::npos);
  CHECK(s.find("low_above_open_close: 1 row (repaired: low = min(open, high, low, close))") != std::string::npos);
  CHECK(s.find("duplicate_timestamp: 2 rows (repaired: first occurrence kept)") != std::string::npos);
  // Policy drop repairs nothing.
  LoadOptions drop;
  drop.policy = ValidationPolicy::drop;
  CHECK(parse_series(text, "x.csv", drop).report.repairs_summary().empty());
}

TEST_CASE("feed warnings in freqtrade JSON name the candles (their lines are shared)") {
  Walk w;
  std::string json = "[";
  std::vector<std::string> candles;
  for (int k = 0; k < 30; ++k) {
    const std::string r = w.next(kT0 + k * kHour);  // "t,o,h,l,c,v\n"
    candles.push_back("[" + r.substr(0, r.size() - 1) + "]");
  }
  for (int k = 10; k < 20; ++k) {  // candles 11..20 again as candles 31..40, 20 hours later
    const std::string& c = candles[static_cast<std::size_t>(k)];
    const std::size_t comma = c.find(',');
    candles.push_back("[" + std::to_string(std::stoll(c.substr(1, comma - 1)) + 30 * kHour) + c.substr(comma));
  }
  for (std::size_t k = 0; k < candles.size(); ++k) json += (k ? "," : "") + candles[k];
  json += "]";
  const LoadResult r = parse_series(json, "ETH_USDT-1h.json");
  REQUIRE(r.report.count(Warning::repeated_block) == 1);
  CHECK(r.report.warnings.front().detail.find("10 candles 31..40") != std::string::npos);
  CHECK(r.report.warnings.front().detail.find("repeat candles 11..20") != std::string::npos);
}
