#include "tasks/csv_candles.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "kernels/error.h"
#include "tasks/calendar.h"
#include "tasks/csv_reader.h"
#include "tasks/text.h"

namespace metatape::tasks {

using text::fmt;
using text::lower;
using text::NumStatus;
using text::parse_number;

namespace {

bool is_banner(std::string_view line) {
  line = text::trim_blank(line);
  const std::string l = lower(line.substr(0, std::min<std::size_t>(line.size(), 120)));
  return l.find("cryptodatadownload") != std::string::npos || l.rfind("http", 0) == 0 ||
         l.rfind("created on", 0) == 0 || l.rfind("timestamps are", 0) == 0;
}

bool is_header(const std::vector<std::string_view>& fields) {
  bool open = false, close = false;
  for (std::string_view f : fields) {
    const std::string l = lower(f);
    open = open || l == "open" || l == "o";
    close = close || l == "close" || l == "c";
  }
  return open && close;
}

struct Columns {
  int time = -1;   // numeric unix (or ISO text, tried as a date)
  int date = -1;   // date text
  int clock = -1;  // separate time-of-day column
  int open = -1, high = -1, low = -1, close = -1;
  int volume = -1;        // base volume
  int volume_quote = -1;  // CDD second volume column (for the swapped-volume check)
  std::size_t needed = 0;
  std::string format;
};

Columns map_header(const std::vector<std::string_view>& fields) {
  Columns c;
  c.format = "header_csv";
  int volume_like = 0;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string n = lower(fields[i]);
    const int k = static_cast<int>(i);
    auto first = [&](int& slot) {
      if (slot < 0) slot = k;
    };
    if (n == "unix" || n == "unix timestamp" || n == "timestamp" || n == "date_ms" || n == "time_ms" ||
        n == "open_time" || n == "opentime" || n == "open time" || n == "ts" || n == "unix_timestamp")
      first(c.time);
    else if (n == "date" || n == "datetime" || n == "date_time")
      first(c.date);
    else if (n == "time")
      first(c.clock);
    else if (n == "open" || n == "o")
      first(c.open);
    else if (n == "high" || n == "h")
      first(c.high);
    else if (n == "low" || n == "l")
      first(c.low);
    else if (n == "close" || n == "c")
      first(c.close);
    else if (n == "volume" || n == "v" || n.rfind("volume ", 0) == 0 || n.rfind("volume_", 0) == 0) {
      if (volume_like == 0)
        c.volume = k;
      else if (volume_like == 1 && n.rfind("volume ", 0) == 0)
        c.volume_quote = k;
      ++volume_like;
    }
  }
  if (c.time >= 0 && fields.size() >= 12 && lower(fields[static_cast<std::size_t>(c.time)]) == "open_time")
    c.format = "binance_kline";
  if (c.time >= 0 && c.date >= 0) c.format = "cdd_csv";
  if (c.time < 0 && c.date < 0 && c.clock >= 0) std::swap(c.date, c.clock);
  for (int idx : {c.time, c.date, c.clock, c.open, c.high, c.low, c.close, c.volume, c.volume_quote})
    c.needed = std::max<std::size_t>(c.needed, static_cast<std::size_t>(idx + 1));
  return c;
}

Columns headerless(const std::vector<std::string_view>& f) {
  Columns c;
  double x = 0;
  if (f.size() >= 12 && parse_number(f[0], x) == NumStatus::ok && parse_number(f[6], x) == NumStatus::ok) {
    c.format = "binance_kline";
    c.time = 0, c.open = 1, c.high = 2, c.low = 3, c.close = 4, c.volume = 5;
  } else if (f.size() >= 8 && parse_number(f[2], x) != NumStatus::ok) {
    c.format = "cdd_csv";  // unix, date, symbol, open, high, low, close, volume base[, volume quote]
    c.time = 0, c.date = 1, c.open = 3, c.high = 4, c.low = 5, c.close = 6, c.volume = 7;
    if (f.size() >= 9) c.volume_quote = 8;
  } else if (f.size() == 6 || f.size() == 5) {
    c.format = "plain_csv";
    c.time = 0, c.open = 1, c.high = 2, c.low = 3, c.close = 4, c.volume = f.size() == 6 ? 5 : -1;
  } else {
    return c;
  }
  for (int idx : {c.time, c.date, c.open, c.high, c.low, c.close, c.volume, c.volume_quote})
    c.needed = std::max<std::size_t>(c.needed, static_cast<std::size_t>(idx + 1));
  return c;
}

}  // namespace

void parse_csv(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
               std::vector<Row>& rows) {
  const std::int64_t cap = row_cap(options);
  const CsvTable table(text, report.path);
  report.lines = table.lines();
  const std::size_t records = table.size();
  // Fields of record k, each trimmed of blanks and stray quotes.
  auto split_fields = [&table](std::size_t k, std::vector<std::string_view>& out) {
    table.fields(k, out);
    for (std::string_view& f : out) f = text::trim_value(f);
  };
  auto blank = [&table](std::size_t k) { return table.field_count(k) == 1 && text::trim_value(table.raw(k)).empty(); };

  std::vector<std::string_view> f;
  Columns cols;
  bool have_columns = false;
  std::size_t first_data = 0;
  for (std::size_t i = 0; i < records; ++i) {
    if (blank(i) || is_banner(table.raw(i))) continue;
    split_fields(i, f);
    if (is_header(f)) {
      cols = map_header(f);
      have_columns = true;
      first_data = i + 1;
    } else {
      first_data = i;
    }
    break;
  }
  if (!have_columns) {
    // No header on top: a spreadsheet may have sorted it to the bottom; else infer from the shape.
    for (std::size_t k = 0; k < std::min<std::size_t>(records, 5); ++k) {
      split_fields(records - 1 - k, f);
      if (is_header(f)) {
        cols = map_header(f);
        have_columns = true;
        break;
      }
    }
    if (!have_columns && first_data < records) {
      split_fields(first_data, f);
      cols = headerless(f);
      have_columns = cols.format.size() > 0;
    }
    if (have_columns) cols.format += "_headerless";
  }
  if (!have_columns || cols.open < 0 || cols.high < 0 || cols.low < 0 || cols.close < 0 ||
      (cols.time < 0 && cols.date < 0))
    fail("load: " + report.path + ": line " +
         std::to_string(first_data < records ? table.line(first_data) : report.lines + 1) +
         ": malformed_line: cannot recognise the format (need a header naming a time column and "
         "open, high, low, close, or freqtrade JSON, or 12-column Binance klines)");
  report.format = cols.format;
  if (cols.volume < 0)
    ctx.note(Defect::missing_field, first_data < records ? table.line(first_data) : 0,
             "no volume column; volume set to 0", "reported");

  rows.reserve(records);
  for (std::size_t i = first_data; i < records; ++i) {
    if (blank(i)) continue;
    const std::string_view line = table.raw(i);
    const std::int64_t line_no = table.line(i);
    split_fields(i, f);
    // Banner or header lines (possibly moved by a spreadsheet) start with a letter; data rows do not.
    const std::string_view lead = text::trim_value(line);
    const char first = lead.empty() ? ' ' : lead.front();
    if ((std::isalpha(static_cast<unsigned char>(first)) && !std::isdigit(static_cast<unsigned char>(first))) &&
        (is_banner(line) || is_header(f)))
      continue;
    if (cap > 0 && report.rows_read >= cap) break;
    report.rows_read++;
    if (f.size() < cols.needed) {
      ctx.defect(Defect::missing_field, line_no,
                 std::to_string(f.size()) + " fields, the header needs " + std::to_string(cols.needed), "dropped");
      report.rows_dropped++;
      continue;
    }
    Row r;
    r.line = line_no;
    // Time: the unix column when it is a number, else a date text (in that column or the date column).
    bool have_time = false;
    if (cols.time >= 0) {
      const std::string_view s = f[static_cast<std::size_t>(cols.time)];
      double v = 0;
      if (parse_number(s, v) == NumStatus::ok) {
        const bool scientific = s.find_first_of("eE") != std::string_view::npos;
        if (scientific && v >= 1e9) {
          // A spreadsheet rounded the timestamp (e.g. "1.63875E+12"): its unit and precision are lost.
          const std::string detail =
              "unix timestamp '" + std::string(s) + "' is in scientific notation and has lost precision";
          if (ctx.policy() == ValidationPolicy::fail) ctx.refuse(Defect::wrong_units, line_no, detail);
          std::int64_t t = 0;
          const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
          if (ctx.policy() == ValidationPolicy::repair && cols.date >= 0 &&
              calendar::parse_date(f[static_cast<std::size_t>(cols.date)], clock, t)) {
            ctx.note(Defect::wrong_units, line_no, detail, "repaired: time taken from the date column");
            report.rows_repaired++;
            r.t = t;
            have_time = true;
          } else {
            ctx.note(Defect::wrong_units, line_no, detail, "dropped");
            report.rows_dropped++;
            continue;
          }
        } else {
          int unit = 0;
          r.t = calendar::unix_to_ms(v, unit);
          have_time = true;
        }
      } else if (cols.date < 0) {
        const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
        have_time = calendar::parse_date(s, clock, r.t);
      } else {
        std::int64_t t = 0;
        const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
        have_time =
            calendar::parse_date(s, clock, t) || calendar::parse_date(f[static_cast<std::size_t>(cols.date)], clock, t);
        r.t = t;
      }
    } else {
      const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
      have_time = calendar::parse_date(f[static_cast<std::size_t>(cols.date)], clock, r.t);
    }
    if (!have_time) {
      const std::string_view s = f[static_cast<std::size_t>(cols.time >= 0 ? cols.time : cols.date)];
      ctx.defect(s.empty() ? Defect::missing_field : Defect::malformed_line, line_no,
                 "time '" + std::string(s.substr(0, 40)) + "' is not a timestamp or a calendar date", "dropped");
      report.rows_dropped++;
      continue;
    }
    if (r.t < calendar::min_plausible_ms || r.t > calendar::max_plausible_ms) {
      ctx.defect(Defect::wrong_units, line_no,
                 "time " + std::to_string(r.t) + " ms is outside 2009..2100 (wrong unit?)", "dropped");
      report.rows_dropped++;
      continue;
    }
    NumParse p{ctx, line_no, {}};
    r.o = p.get(f[static_cast<std::size_t>(cols.open)], "open");
    r.h = p.get(f[static_cast<std::size_t>(cols.high)], "high");
    r.l = p.get(f[static_cast<std::size_t>(cols.low)], "low");
    r.c = p.get(f[static_cast<std::size_t>(cols.close)], "close");
    r.v = cols.volume >= 0 ? p.get(f[static_cast<std::size_t>(cols.volume)], "volume") : 0.0;
    if (!p.ok) {
      report.rows_dropped++;
      continue;
    }
    if (cols.volume_quote >= 0) {
      double vq = 0;
      if (parse_number(f[static_cast<std::size_t>(cols.volume_quote)], vq) == NumStatus::ok && vq > 0 && r.v > 0 &&
          r.c > 0 && (r.c > 3.0 || r.c < 1.0 / 3.0)) {
        // Normal: base volume * price ~ quote volume. Swapped: quote volume * price ~ base volume.
        const double normal = std::fabs(std::log(r.v * r.c / vq));
        const double swapped = std::fabs(std::log(vq * r.c / r.v));
        if (swapped < std::log(3.0) && normal > std::log(3.0)) {
          const std::string detail =
              "volume columns swapped: base volume " + fmt(r.v) + " ~ quote volume " + fmt(vq) + " x close " + fmt(r.c);
          ctx.defect(Defect::wrong_units, line_no, detail, "repaired: volumes swapped back");
          if (ctx.policy() == ValidationPolicy::drop) {
            report.rows_dropped++;
            continue;
          }
          r.v = vq;
          report.rows_repaired++;
        }
      }
    }
    if (!validate_row(r, ctx, report)) {
      report.rows_dropped++;
      continue;
    }
    rows.push_back(r);
  }
}

}  // namespace metatape::tasks
