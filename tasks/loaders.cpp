// The loaders' entry points: format detection, ordering, interval inference, gap reporting and
// filling, and the feed warnings; the pieces live in the files named in tasks/loaders.h.
#include "tasks/loaders.h"

#include <cctype>
#include <map>

#include "kernels/error.h"
#include "tasks/csv_candles.h"
#include "tasks/feed_warnings.h"
#include "tasks/freqtrade_json.h"
#include "tasks/validation.h"

namespace metatape::tasks {

LoadResult parse_series(const std::string& text, const std::string& name, const LoadOptions& options) {
  LoadResult result;
  LoadReport& report = result.report;
  report.path = name;
  Context ctx(name, options, report);
  std::vector<Row> rows;
  std::size_t first = 0;
  while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first]))) ++first;
  if (first < text.size() && (text[first] == '[' || text[first] == '{'))
    parse_json(text, ctx, report, options, rows);
  else
    parse_csv(text, ctx, report, options, rows);
  warn_repeated_blocks(rows, options, report);  // in file order: the copies sit apart there
  order_rows(rows, ctx, report);

  if (report.rows_read == 0) fail("load: " + name + ": no data rows (empty file or only a header)");
  if (rows.size() < 2 || report.rows_dropped * 2 > report.rows_read)
    ctx.unusable(std::to_string(report.rows_dropped) + " of " + std::to_string(report.rows_read) +
                 " rows are defective (more than half)");

  // Bar interval: the most common step.
  std::map<std::int64_t, std::int64_t> steps;
  for (std::size_t k = 1; k < rows.size() && k < 20000; ++k) steps[rows[k].t - rows[k - 1].t]++;
  std::int64_t interval = 0, best = 0;
  for (const auto& [step, n] : steps)
    if (n > best) best = n, interval = step;

  const NameInfo info = infer_name(name);
  Series& s = result.series;
  s.symbol = options.symbol.empty() ? info.symbol : options.symbol;
  s.exchange = options.exchange.empty() ? info.exchange : options.exchange;
  s.interval_ms = options.interval.empty() ? interval : interval_to_ms(options.interval);
  if (s.interval_ms <= 0) fail("load: " + name + ": cannot determine the bar interval; pass LoadOptions::interval");
  s.interval = options.interval.empty() ? ms_to_interval(s.interval_ms) : options.interval;
  s.reserve(rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const Row& r = rows[k];
    if (k > 0) {
      const std::int64_t step = r.t - rows[k - 1].t;
      if (step > s.interval_ms) {
        const std::int64_t missing = (step + s.interval_ms - 1) / s.interval_ms - 1;
        report.gaps++;
        report.missing_bars += missing;
        const bool fill = options.forward_fill_gaps && step % s.interval_ms == 0;
        ctx.note(Defect::gap, r.line, std::to_string(missing) + " missing bar(s) before time " + std::to_string(r.t),
                 fill ? "filled " + std::to_string(missing) + " bar(s) with the previous close" : "reported");
        if (fill && report.bars_filled + missing > options.max_fill_bars) {
          fail("load: " + name + ": line " + std::to_string(r.line) + ": gap of " + std::to_string(missing) +
               " missing bars is too long to forward-fill (limit " + std::to_string(options.max_fill_bars) +
               " bars per file, LoadOptions::max_fill_bars); fix the timestamps or load without "
               "forward_fill_gaps");
        }
        if (fill) {
          const double c = rows[k - 1].c;
          for (std::int64_t m = 1; m <= missing; ++m)
            s.push_back(rows[k - 1].t + m * s.interval_ms, c, c, c, c, 0.0, true);
          report.bars_filled += missing;
        }
      }
    }
    s.push_back(r.t, r.o, r.h, r.l, r.c, r.v);
  }
  report.rows_kept = static_cast<std::int64_t>(rows.size());
  warn_stale_tail(rows, options, report);
  warn_outliers(rows, options, report);
  return result;
}

LoadResult load_series(const std::string& path, const LoadOptions& options) {
  return parse_series(read_file(path, options.max_decompressed_bytes), path, options);
}

Market load_market(const std::vector<std::string>& paths, const LoadOptions& options, AlignMode mode) {
  std::vector<Series> series;
  for (const std::string& p : paths) series.push_back(load_series(p, options).series);
  return align(std::move(series), mode);
}

}  // namespace metatape::tasks
