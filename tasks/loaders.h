// Market data loaders with validation. One entry point, load_series(path, options), detects the format
// from the content (gzip is read transparently when the file starts with the gzip magic or ends in
// .gz):
//   - freqtrade JSON candles: [[ts_ms, open, high, low, close, volume], ...];
//   - Binance kline CSV, with or without a header, 12 columns (open_time, o, h, l, c, v, close_time,
//     quote volume, trades, taker base, taker quote, ignore), open_time in ms or µs or ISO text;
//   - CSV with a header whose columns are mapped by name: time from unix / timestamp / date_ms /
//     open_time / "unix timestamp" (s, ms or µs, detected per value) or else from date / datetime
//     (ISO, "YYYY-MM-DD HH-AM", "M/D/YYYY H:MM", Excel serial days, "DD-MM-YY" + a time column);
//     open, high, low, close; volume from "volume" or "Volume <BASE>" (the first volume column);
//     CryptoDataDownload banner lines before the header are skipped; a header found at the end
//     of the file (spreadsheet-sorted) is used too; rows ascending or descending;
//   - header-less CDD rows (unix, date, symbol, o, h, l, c, vol, vol) and header-less 6-column rows.
// Every row is validated; what happens to a bad row is set by the policy (see ValidationPolicy).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/series.h"

namespace metatape::tasks {

enum class ValidationPolicy {
  fail,    // throw at the first defect; the message names the file, the line and the defect
  drop,    // drop defective rows, keep going, list them in the report
  repair,  // fix what has a safe fix (reorder, de-duplicate, clamp high/low to the open/close
           // envelope, convert a timestamp in the wrong unit); drop what has none; report all
};

enum class Defect {
  malformed_line,        // wrong number of fields, unparseable number or date
  missing_field,         // an empty field where a value is required
  non_finite,            // NaN or Inf
  non_positive_price,    // a price <= 0
  high_below_open_close, // high < max(open, close) (or high < low)
  low_above_open_close,  // low > min(open, close)
  negative_volume,
  duplicate_timestamp,
  non_monotonic_timestamp,  // a time going backwards inside an ascending (or descending) file
  gap,                      // missing bars (reported; never an error)
  wrong_units,              // a timestamp whose unit disagrees with the file's, or not a plausible time
  not_ohlc,                 // a value series in OHLC clothing (e.g. funding rates)
};
const char* defect_name(Defect d);  // "duplicate_timestamp", ...

struct LoadIssue {
  Defect defect;
  std::int64_t line = 0;  // 1-based line in the (decompressed) file; 0 when not tied to a line
  std::string detail;     // e.g. "high 99.5 < max(open 100, close 101)"
  std::string action;     // "refused", "dropped", "repaired: ...", "reported", "filled 3 bars"
};

inline constexpr std::int64_t default_max_decompressed_bytes = std::int64_t{2} << 30;

struct LoadOptions {
  ValidationPolicy policy = ValidationPolicy::fail;
  // Fill missing bars with the previous close (volume 0, Series::filled = 1). Off by default: gaps
  // are only reported.
  bool forward_fill_gaps = false;
  // Most bars forward filling may add to one file; a longer fill is refused (a corrupt timestamp
  // would otherwise ask for billions of bars).
  std::int64_t max_fill_bars = 1'000'000;
  // Metadata overrides; empty strings are inferred from the file name and folder.
  std::string symbol, exchange, interval;
  // Read at most this many data rows (0 = all). The environment variable METATAPE_MAX_ROWS, when
  // set, caps this further (used to keep sanitizer runs short).
  std::int64_t max_rows = 0;
  // At most this many issues are kept in the report (counts stay exact).
  std::size_t max_issues_kept = 200;
  // Most bytes one file may hold once read, after gunzip (2 GiB by default): a larger file, or a gzip
  // that inflates past it (a "gzip bomb"), is refused with a message naming the file and the limit.
  std::int64_t max_decompressed_bytes = default_max_decompressed_bytes;
};

struct LoadReport {
  std::string path;
  std::string format;  // "freqtrade_json", "binance_kline", "header_csv", "cdd_csv", ...
  bool descending = false;
  std::int64_t lines = 0, rows_read = 0, rows_kept = 0, rows_dropped = 0, rows_repaired = 0;
  std::int64_t gaps = 0, missing_bars = 0, bars_filled = 0;
  std::vector<std::int64_t> defect_counts;  // indexed by Defect
  std::vector<LoadIssue> issues;            // the first max_issues_kept issues
  std::int64_t count(Defect d) const;
  std::string summary() const;  // one line per defect kind with counts and the first line number
};

struct LoadResult {
  Series series;
  LoadReport report;
};

// Loads one file. Throws Error "metatape: load: <path>:<line>: <defect>: <detail> (...)" under policy
// fail; throws under any policy when nothing usable remains or the format is not recognised.
LoadResult load_series(const std::string& path, const LoadOptions& options = {});

// The same on in-memory text; `name` stands for the path in messages and metadata inference.
LoadResult parse_series(const std::string& text, const std::string& name,
                        const LoadOptions& options = {});

// Whole file as bytes, gunzipped when it is gzip (magic 1f 8b). Throws naming the path on failure:
// a directory, device, FIFO or socket is refused before reading, and so is a file whose size, or
// whose decompressed size, exceeds max_bytes.
std::string read_file(const std::string& path, std::int64_t max_bytes = default_max_decompressed_bytes);

// Infers (symbol, exchange, interval) from a path such as ".../Binance_BTCUSDT_1h.csv",
// "kucoin_ETH_USDT-5m.json", "BTC_USDT-1h-futures.json.gz".
struct NameInfo {
  std::string symbol, exchange, interval;
};
NameInfo infer_name(const std::string& path);

// Parses "1m", "5m", "15m", "1h", "8h", "1d", "d", "1w" into milliseconds (0 when not recognised).
std::int64_t interval_to_ms(const std::string& interval);
std::string ms_to_interval(std::int64_t ms);

// Loads several files and aligns them (see align()).
Market load_market(const std::vector<std::string>& paths, const LoadOptions& options = {},
                   AlignMode mode = AlignMode::intersect);

}  // namespace metatape::tasks
