// Market data loaders with validation. One entry point, load_series(path, options), detects the format
// from the content (gzip is read transparently when the file starts with the gzip magic or ends in
// .gz):
//   - freqtrade JSON candles: [[ts_ms, open, high, low, close, volume], ...];
//   - Binance kline CSV, with or without a header, 12 columns (open_time, o, h, l, c, v, close_time,
//     quote volume, trades, taker base, taker quote, ignore), open_time in ms or µs or ISO text;
//   - CSV with a header whose columns are mapped by name: time from unix / timestamp / date_ms /
//     open_time / "unix timestamp" (s, ms or µs, detected per value) or else from date / datetime
//     (ISO with an optional UTC offset, "YYYY-MM-DD HH-AM", "M/D/YYYY H:MM", Excel serial days,
//     "DD-MM-YY" + a time column);
//     open, high, low, close; volume from "volume" or "Volume <BASE>" (the first volume column);
//     CryptoDataDownload banner lines before the header are skipped; a header found at the end
//     of the file (spreadsheet-sorted) is used too; rows ascending or descending;
//   - header-less CDD rows (unix, date, symbol, o, h, l, c, vol, vol) and header-less 6-column rows.
// CSV is read with RFC 4180 quoting (quoted fields, embedded commas, doubled quotes, CRLF, a BOM).
// Every row is validated; what happens to a bad row is set by the policy (see ValidationPolicy).
// After validation the kept rows are checked for signs of a broken feed that no row-level check can
// see (a flat zero-volume tail, a block of candles repeated under other timestamps, outliers); these
// are warnings (LoadReport::warnings), never refusals, under every policy.
//
// The pieces, one concern each: tasks/text.h (number and text helpers), tasks/calendar.h (dates),
// tasks/csv_reader.h (RFC 4180 records), tasks/csv_candles.h (CSV layout sniffing and rows),
// tasks/freqtrade_json.h (JSON candles, nlohmann-json SAX), tasks/validation.h (row checks, ordering,
// the report), tasks/feed_warnings.h (the warnings), tasks/compressed_file.h (reading and gunzip),
// tasks/file_naming.h (symbol, exchange, interval from a file name). This file keeps the entry points.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/compressed_file.h"
#include "tasks/file_naming.h"
#include "tasks/series.h"

namespace metatape::tasks {

enum class ValidationPolicy {
  fail,    // throw at the first defect; the message names the file, the line and the defect
  drop,    // drop defective rows, keep going, list them in the report
  repair,  // fix what has a safe fix (reorder, de-duplicate, clamp high/low to the open/close
           // envelope, convert a timestamp in the wrong unit); drop what has none; report all
};

enum class Defect {
  malformed_line,         // wrong number of fields, unparseable number or date
  missing_field,          // an empty field where a value is required
  non_finite,             // NaN or Inf
  non_positive_price,     // a price <= 0
  high_below_open_close,  // high < max(open, close) (or high < low)
  low_above_open_close,   // low > min(open, close)
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

// Signs of a broken feed, found after validation. Reported, never refused, under every policy.
enum class Warning {
  stale_tail,      // the last >= stale_tail_bars bars are flat (open = high = low = close) with volume 0
  repeated_block,  // >= repeated_block_rows consecutive OHLCV rows appear again under other timestamps
  outlier_wick,    // high / close or close / low above outlier_wick_ratio
  outlier_return,  // |log return - median| above outlier_return_sigmas robust deviations and outlier_return_min
};
const char* warning_name(Warning w);  // "stale_tail", ...

struct LoadWarning {
  Warning kind;
  std::int64_t first_line = 0, last_line = 0;  // the rows concerned (source lines)
  std::int64_t rows = 0;                       // how many rows the warning covers
  std::string detail;                          // what was seen, and what to do about it
};

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

  // Feed warnings (LoadReport::warnings); 0 turns a check off.
  // A tail of at least this many flat (O = H = L = C), zero-volume bars: the venue stopped trading or
  // the feed froze while the clock ran on.
  std::int64_t stale_tail_bars = 5;
  // A run of at least this many consecutive rows (not all zero-volume, no two neighbours equal) whose
  // open, high, low, close and volume all reappear, in the same order, at other timestamps: e.g. one
  // venue's candles stored under two time-zone labels.
  std::int64_t repeated_block_rows = 8;
  // A wick this many times the close: high / close or close / low above it (a fat-finger print or a
  // unit error in one column).
  double outlier_wick_ratio = 50.0;
  // A close-to-close log return this many robust standard deviations (1.4826 x the median absolute
  // deviation of the non-zero returns) from the median return, and at least outlier_return_min in
  // size (a 0.1 log return is about 10 %: a stablecoin's 2 % blip is many deviations but no outlier);
  // checked on files of at least 30 rows. Real crashes reach ~45 deviations on hourly bars.
  double outlier_return_sigmas = 50.0;
  double outlier_return_min = 0.1;
  // At most this many warnings of each kind are kept (their count stays exact).
  std::size_t max_warnings_kept = 20;
};

struct LoadReport {
  std::string path;
  std::string format;  // "freqtrade_json", "binance_kline", "header_csv", "cdd_csv", ...
  bool descending = false;
  std::int64_t lines = 0, rows_read = 0, rows_kept = 0, rows_dropped = 0, rows_repaired = 0;
  std::int64_t gaps = 0, missing_bars = 0, bars_filled = 0;
  std::vector<std::int64_t> defect_counts;  // indexed by Defect
  std::vector<LoadIssue> issues;            // the first max_issues_kept issues
  // What repair did: per defect, how many rows were repaired (not dropped) and the first repair's
  // action ("repaired: high = max(open, high, low, close)"); indexed by Defect.
  std::vector<std::int64_t> repair_counts;
  std::vector<std::string> repair_actions;
  std::vector<std::int64_t> warning_counts;  // indexed by Warning
  std::vector<LoadWarning> warnings;         // the first max_warnings_kept of each kind
  std::int64_t count(Defect d) const;
  std::int64_t repaired(Defect d) const;
  std::int64_t count(Warning w) const;
  std::string summary() const;  // one line per defect kind with counts and the first line number
  // One line per repair kind: "high_below_open_close: 3 rows (repaired: high = ...)"; "" when none.
  std::string repairs_summary() const;
  // One line per kept warning: "<path>: lines A..B: stale_tail: ..."; "" when none.
  std::string warnings_summary() const;
};

struct LoadResult {
  Series series;
  LoadReport report;
};

// Loads one file. Throws Error "metatape: load: <path>:<line>: <defect>: <detail> (...)" under policy
// fail; throws under any policy when nothing usable remains or the format is not recognised.
LoadResult load_series(const std::string& path, const LoadOptions& options = {});

// The same on in-memory text; `name` stands for the path in messages and metadata inference.
LoadResult parse_series(const std::string& text, const std::string& name, const LoadOptions& options = {});

// read_file (tasks/compressed_file.h), infer_name, interval_to_ms and ms_to_interval
// (tasks/file_naming.h) are declared by the headers included above.

// Loads several files and aligns them (see align()).
Market load_market(const std::vector<std::string>& paths, const LoadOptions& options = {},
                   AlignMode mode = AlignMode::intersect);

}  // namespace metatape::tasks
