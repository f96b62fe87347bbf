// OHLCV series and markets. A Series is one instrument on one exchange at one bar interval, stored
// column-wise (struct of arrays), times ascending and strictly increasing (unix milliseconds, bar open
// time). A Market is many series aligned on one common time axis: series[k].time_ms == market.time_ms
// for every k.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metatape::tasks {

struct Series {
  std::string symbol;            // "BTC/USDT" (base/quote) when the source names both, else as given
  std::string exchange;          // "binance", "bybit", "kucoin", "sim0", ... ("unknown" when not known)
  std::string interval;          // "1m", "5m", "1h", "1d", ... ("" when unknown)
  std::int64_t interval_ms = 0;  // bar length; 0 when unknown
  double fee_rate = 0.001;       // taker fee as a fraction of notional (used by the arbitrage family)

  std::vector<std::int64_t> time_ms;  // bar open times, unix ms UTC, strictly increasing
  std::vector<double> open, high, low, close, volume;
  // 1 where the bar was not in the source and was forward filled (LoadOptions::forward_fill_gaps or
  // market alignment); 0 otherwise. Same length as time_ms.
  std::vector<std::uint8_t> filled;

  std::int64_t size() const { return static_cast<std::int64_t>(time_ms.size()); }
  bool empty() const { return time_ms.empty(); }
  // "BTC/USDT@binance 1h"
  std::string label() const;
  void reserve(std::size_t n);
  void push_back(std::int64_t t, double o, double h, double l, double c, double v, bool was_filled = false);
  // Rows [begin, end) as a new series with the same metadata.
  Series slice(std::int64_t begin, std::int64_t end) const;
  // Throws (naming the series and the row) unless the invariants above hold: equal column lengths,
  // strictly increasing times, finite positive prices, low <= min(open, close) <= max(open, close)
  // <= high, finite non-negative volume.
  void check() const;
};

// How to align series whose time axes differ.
enum class AlignMode {
  intersect,     // keep only times present in every series
  forward_fill,  // union of times from the latest first bar to the earliest last bar; missing bars
                 // copy the previous close (open = high = low = close, volume 0) and are flagged
};

struct Market {
  std::vector<std::int64_t> time_ms;  // common axis
  std::vector<Series> series;         // all of length time_ms.size()

  std::int64_t rows() const { return static_cast<std::int64_t>(time_ms.size()); }
  std::int64_t interval_ms() const;  // of the first series (all equal); 0 when empty
  // Index of the series for (symbol, exchange); exchange "" matches the first series of the symbol.
  // Returns -1 when absent.
  int find(const std::string& symbol, const std::string& exchange = "") const;
  std::vector<std::string> symbols() const;  // distinct, in first-appearance order
  std::vector<std::string> exchanges_of(const std::string& symbol) const;
  std::vector<int> series_of(const std::string& symbol) const;  // indices, in order
};

// Aligns series on time. All must share interval_ms (throws naming the two that differ). Throws when
// the aligned axis would be empty (the ranges do not overlap).
Market align(std::vector<Series> series, AlignMode mode = AlignMode::intersect);

// Writes "time_ms,open,high,low,close,volume" with a header; readable again by load_series.
void write_csv(const Series& series, const std::string& path);

}  // namespace metatape::tasks
