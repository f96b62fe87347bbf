#include "tasks/loaders.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string_view>

#include "kernels/error.h"

namespace metatape::tasks {

namespace {

constexpr int kDefectCount = static_cast<int>(Defect::not_ohlc) + 1;
constexpr std::int64_t kMinPlausibleMs = 1'230'768'000'000;  // 2009-01-01
constexpr std::int64_t kMaxPlausibleMs = 4'102'444'800'000;  // 2100-01-01

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"' || s.front() == '\''))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '"' || s.back() == '\'' ||
                        s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Splits on commas into `out` (views into `line`); no allocation after the first call.
void split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (std::size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == ',') {
      out.push_back(trim(line.substr(start, i - start)));
      start = i + 1;
    }
  }
}

enum class NumStatus { ok, empty, bad, non_finite };

NumStatus parse_number(std::string_view s, double& value) {
  if (s.empty()) return NumStatus::empty;
  if (s.front() == '+') s.remove_prefix(1);
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size()) {
    const std::string l = lower(s);
    if (l == "null" || l == "none" || l == "na" || l == "n/a") return NumStatus::empty;
    return NumStatus::bad;
  }
  if (!std::isfinite(value)) return NumStatus::non_finite;
  return NumStatus::ok;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

bool to_int(std::string_view s, int& v) {
  if (!all_digits(s) || s.size() > 9) return false;
  v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return days[m - 1];
}

// "HH:MM[:SS[.fff]]", "H:MM", "HH-AM", "HH-PM", "HH AM"; returns ms into the day.
bool parse_clock(std::string_view s, std::int64_t& ms) {
  s = trim(s);
  if (s.empty()) {
    ms = 0;
    return true;
  }
  const std::string l = lower(s);
  const bool am = l.size() > 2 && l.substr(l.size() - 2) == "am";
  const bool pm = l.size() > 2 && l.substr(l.size() - 2) == "pm";
  if (am || pm) {
    std::string_view h = s.substr(0, s.size() - 2);
    while (!h.empty() && (h.back() == '-' || h.back() == ' ')) h.remove_suffix(1);
    int hour = 0, minute = 0;
    const std::size_t colon = h.find(':');
    if (colon != std::string_view::npos) {
      if (!to_int(h.substr(colon + 1, 2), minute)) return false;
      h = h.substr(0, colon);
    }
    if (!to_int(h, hour) || hour < 1 || hour > 12 || minute > 59) return false;
    if (am) hour = hour == 12 ? 0 : hour;
    else hour = hour == 12 ? 12 : hour + 12;
    ms = (hour * 3600 + minute * 60) * 1000LL;
    return true;
  }
  int hour = 0, minute = 0, second = 0;
  const std::size_t c1 = s.find(':');
  if (c1 == std::string_view::npos) return false;
  if (!to_int(s.substr(0, c1), hour)) return false;
  std::string_view rest = s.substr(c1 + 1);
  const std::size_t c2 = rest.find(':');
  if (!to_int(rest.substr(0, c2 == std::string_view::npos ? rest.size() : c2), minute)) return false;
  double frac = 0;
  if (c2 != std::string_view::npos) {
    std::string_view sec = rest.substr(c2 + 1);
    const std::size_t dot = sec.find('.');
    if (!to_int(sec.substr(0, dot), second)) return false;
    if (dot != std::string_view::npos) {
      double f = 0;
      if (parse_number(sec.substr(dot), f) != NumStatus::ok) return false;
      frac = f;
    }
  }
  if (hour > 23 || minute > 59 || second > 60) return false;
  ms = (hour * 3600 + minute * 60 + second) * 1000LL + static_cast<std::int64_t>(std::llround(frac * 1000));
  return true;
}

// Dates: "YYYY-MM-DD[ T]time[+00:00|Z]", "YYYY-MM-DD HH-AM", "M/D/YYYY H:MM", "DD-MM-YY[ time]",
// Excel serial days ("44694"); `clock` is an optional separate time column.
bool parse_date(std::string_view s, std::string_view clock, std::int64_t& ms) {
  s = trim(s);
  if (s.empty()) return false;
  for (const char* suffix : {"+00:00", "Z", " UTC", "+0000"}) {
    const std::size_t n = std::strlen(suffix);
    if (s.size() > n && s.substr(s.size() - n) == suffix) s.remove_suffix(n);
  }
  double serial = 0;
  if (parse_number(s, serial) == NumStatus::ok) {
    if (serial < 20000 || serial > 80000) return false;
    ms = static_cast<std::int64_t>(std::llround((serial - 25569.0) * 86400000.0));
    return true;
  }
  std::string_view date = s, time;
  const std::size_t sep = s.find_first_of(" T");
  if (sep != std::string_view::npos) {
    date = s.substr(0, sep);
    time = s.substr(sep + 1);
  }
  int y = 0, m = 0, d = 0;
  if (date.find('/') != std::string_view::npos) {
    const std::size_t a = date.find('/'), b = date.find('/', a + 1);
    if (b == std::string_view::npos) return false;
    if (!to_int(date.substr(0, a), m) || !to_int(date.substr(a + 1, b - a - 1), d) ||
        !to_int(date.substr(b + 1), y))
      return false;
    if (y < 100) y += 2000;
  } else {
    const std::size_t a = date.find('-');
    if (a == std::string_view::npos) return false;
    const std::size_t b = date.find('-', a + 1);
    if (b == std::string_view::npos) return false;
    std::string_view p0 = date.substr(0, a), p1 = date.substr(a + 1, b - a - 1), p2 = date.substr(b + 1);
    // "2019-12-15 07-PM" has its clock after the space; "2019-12-15-07" is not a format we know.
    if (p0.size() == 4) {
      if (!to_int(p0, y) || !to_int(p1, m) || !to_int(p2, d)) return false;
    } else if (p0.size() <= 2 && p2.size() == 2) {
      if (!to_int(p0, d) || !to_int(p1, m) || !to_int(p2, y)) return false;
      y += 2000;
    } else {
      return false;
    }
  }
  if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m) || y < 1970 || y > 2100) return false;
  std::int64_t clock_ms = 0;
  if (!parse_clock(time.empty() ? clock : time, clock_ms)) return false;
  ms = days_from_civil(y, static_cast<unsigned>(m), static_cast<unsigned>(d)) * 86400000LL + clock_ms;
  return true;
}

// Seconds, milliseconds, microseconds or nanoseconds since the epoch, decided per value.
std::int64_t unix_to_ms(double v, int& unit) {
  if (v < 1e11) {
    unit = 0;
    return static_cast<std::int64_t>(std::llround(v * 1000.0));
  }
  if (v < 1e14) {
    unit = 1;
    return static_cast<std::int64_t>(std::llround(v));
  }
  if (v < 1e17) {
    unit = 2;
    return static_cast<std::int64_t>(std::llround(v / 1000.0));
  }
  unit = 3;
  return static_cast<std::int64_t>(std::llround(v / 1e6));
}

struct Row {
  std::int64_t t = 0;
  double o = 0, h = 0, l = 0, c = 0, v = 0;
  std::int64_t line = 0;
  std::int64_t candle = 0;  // 1-based item number in JSON files (their lines can hold many candles)
};

// "candle 17: " for JSON rows, "" for CSV rows.
std::string where(const Row& r) { return r.candle > 0 ? "candle " + std::to_string(r.candle) + ": " : std::string(); }

class Context {
 public:
  Context(const std::string& name, const LoadOptions& options, LoadReport& report)
      : name_(name), options_(options), report_(report) {
    report_.defect_counts.assign(kDefectCount, 0);
  }

  // Records a defect; under policy fail throws. Returns the action taken ("dropped" or "repaired").
  void defect(Defect d, std::int64_t line, const std::string& detail, const char* action) {
    if (options_.policy == ValidationPolicy::fail) refuse(d, line, detail);
    note(d, line, detail, action);
  }
  void note(Defect d, std::int64_t line, const std::string& detail, const std::string& action) {
    report_.defect_counts[static_cast<std::size_t>(d)]++;
    if (report_.issues.size() < options_.max_issues_kept) report_.issues.push_back({d, line, detail, action});
  }
  [[noreturn]] void refuse(Defect d, std::int64_t line, const std::string& detail) const {
    fail("load: " + name_ + ": line " + std::to_string(line) + ": " + defect_name(d) + ": " + detail +
         " (policy fail refuses the file; fix the source or load with policy repair or drop)");
  }
  [[noreturn]] void unusable(const std::string& why) const {
    std::string first;
    if (!report_.issues.empty()) {
      const LoadIssue& i = report_.issues.front();
      first = "; first defect at line " + std::to_string(i.line) + ": " + defect_name(i.defect) + ": " + i.detail;
    }
    fail("load: " + name_ + ": " + why + first + " (the file is not usable as OHLCV candles)");
  }
  ValidationPolicy policy() const { return options_.policy; }

 private:
  const std::string& name_;
  const LoadOptions& options_;
  LoadReport& report_;
};

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

// Checks one row's values; returns false when the row must be dropped. May repair high/low.
bool validate_row(Row& r, Context& ctx, LoadReport& report) {
  if (r.o != 0 && r.h == 0 && r.l == 0 && r.c == 0) {
    ctx.defect(Defect::not_ohlc, r.line,
               where(r) + "open " + fmt(r.o) + " with high, low and close 0: a value series (e.g. a funding rate), not candles",
               "dropped");
    return false;
  }
  if (!(r.o > 0 && r.h > 0 && r.l > 0 && r.c > 0)) {
    ctx.defect(Defect::non_positive_price, r.line,
               where(r) + "open " + fmt(r.o) + ", high " + fmt(r.h) + ", low " + fmt(r.l) + ", close " + fmt(r.c),
               "dropped");
    return false;
  }
  if (r.v < 0) {
    ctx.defect(Defect::negative_volume, r.line, where(r) + "volume " + fmt(r.v), "dropped");
    return false;
  }
  const double top = std::max(r.o, r.c), bottom = std::min(r.o, r.c);
  bool repaired = false;
  if (r.h < top || r.h < r.l) {
    const std::string detail = where(r) + "high " + fmt(r.h) + " < max(open " + fmt(r.o) + ", close " + fmt(r.c) +
                               (r.h < r.l ? ", low " + fmt(r.l) : std::string()) + ")";
    if (ctx.policy() == ValidationPolicy::fail) ctx.refuse(Defect::high_below_open_close, r.line, detail);
    if (ctx.policy() == ValidationPolicy::drop) {
      ctx.note(Defect::high_below_open_close, r.line, detail, "dropped");
      return false;
    }
    ctx.note(Defect::high_below_open_close, r.line, detail, "repaired: high = max(open, high, low, close)");
    r.h = std::max({r.h, r.o, r.c, r.l});
    repaired = true;
  }
  if (r.l > bottom) {
    const std::string detail = where(r) + "low " + fmt(r.l) + " > min(open " + fmt(r.o) + ", close " + fmt(r.c) + ")";
    if (ctx.policy() == ValidationPolicy::fail) ctx.refuse(Defect::low_above_open_close, r.line, detail);
    if (ctx.policy() == ValidationPolicy::drop) {
      ctx.note(Defect::low_above_open_close, r.line, detail, "dropped");
      return false;
    }
    ctx.note(Defect::low_above_open_close, r.line, detail, "repaired: low = min(open, high, low, close)");
    r.l = std::min({r.l, r.o, r.c, r.h});
    repaired = true;
  }
  if (repaired) report.rows_repaired++;
  return true;
}

bool is_banner(std::string_view line) {
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
  int time = -1;       // numeric unix (or ISO text, tried as a date)
  int date = -1;       // date text
  int clock = -1;      // separate time-of-day column
  int open = -1, high = -1, low = -1, close = -1;
  int volume = -1;     // base volume
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
      if (volume_like == 0) c.volume = k;
      else if (volume_like == 1 && n.rfind("volume ", 0) == 0) c.volume_quote = k;
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

std::int64_t row_cap(const LoadOptions& options) {
  std::int64_t cap = options.max_rows > 0 ? options.max_rows : 0;
  if (const char* env = std::getenv("METATAPE_MAX_ROWS")) {
    const long long v = std::atoll(env);
    if (v > 0) cap = cap > 0 ? std::min<std::int64_t>(cap, v) : v;
  }
  return cap;
}

struct NumParse {
  Context& ctx;
  std::int64_t line;
  bool ok = true;
  double get(std::string_view s, const char* what) {
    if (!ok) return 0;
    double v = 0;
    switch (parse_number(s, v)) {
      case NumStatus::ok: return v;
      case NumStatus::empty:
        ctx.defect(Defect::missing_field, line, std::string(what) + " is empty", "dropped");
        break;
      case NumStatus::non_finite:
        ctx.defect(Defect::non_finite, line, std::string(what) + " is '" + std::string(s) + "'", "dropped");
        break;
      case NumStatus::bad:
        ctx.defect(Defect::malformed_line, line,
                   std::string(what) + " '" + std::string(s.substr(0, 40)) + "' is not a number", "dropped");
        break;
    }
    ok = false;
    return 0;
  }
};

void parse_csv(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
               std::vector<Row>& rows) {
  const std::int64_t cap = row_cap(options);
  std::vector<std::string_view> lines;
  lines.reserve(text.size() / 48 + 16);
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(start, end - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    start = end + 1;
  }
  report.lines = static_cast<std::int64_t>(lines.size());

  std::vector<std::string_view> f;
  Columns cols;
  bool have_columns = false;
  std::size_t first_data = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty() || is_banner(lines[i])) continue;
    split_fields(lines[i], f);
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
    for (std::size_t k = 0; k < std::min<std::size_t>(lines.size(), 5); ++k) {
      split_fields(lines[lines.size() - 1 - k], f);
      if (is_header(f)) {
        cols = map_header(f);
        have_columns = true;
        break;
      }
    }
    if (!have_columns && first_data < lines.size()) {
      split_fields(lines[first_data], f);
      cols = headerless(f);
      have_columns = cols.format.size() > 0;
    }
    if (have_columns) cols.format += "_headerless";
  }
  if (!have_columns || cols.open < 0 || cols.high < 0 || cols.low < 0 || cols.close < 0 ||
      (cols.time < 0 && cols.date < 0))
    fail("load: " + report.path + ": line " + std::to_string(first_data + 1) +
         ": malformed_line: cannot recognise the format (need a header naming a time column and "
         "open, high, low, close, or freqtrade JSON, or 12-column Binance klines)");
  report.format = cols.format;
  if (cols.volume < 0)
    ctx.note(Defect::missing_field, static_cast<std::int64_t>(first_data), "no volume column; volume set to 0",
             "reported");

  rows.reserve(lines.size());
  for (std::size_t i = first_data; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (trim(line).empty()) continue;
    const auto line_no = static_cast<std::int64_t>(i + 1);
    split_fields(line, f);
    // Banner or header lines (possibly moved by a spreadsheet) start with a letter; data rows do not.
    const char first = trim(line).front();
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
          const std::string detail = "unix timestamp '" + std::string(s) +
                                     "' is in scientific notation and has lost precision";
          if (ctx.policy() == ValidationPolicy::fail) ctx.refuse(Defect::wrong_units, line_no, detail);
          std::int64_t t = 0;
          const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
          if (ctx.policy() == ValidationPolicy::repair && cols.date >= 0 &&
              parse_date(f[static_cast<std::size_t>(cols.date)], clock, t)) {
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
          r.t = unix_to_ms(v, unit);
          have_time = true;
        }
      } else if (cols.date < 0) {
        const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
        have_time = parse_date(s, clock, r.t);
      } else {
        std::int64_t t = 0;
        const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
        have_time = parse_date(s, clock, t) || parse_date(f[static_cast<std::size_t>(cols.date)], clock, t);
        r.t = t;
      }
    } else {
      const std::string_view clock = cols.clock >= 0 ? f[static_cast<std::size_t>(cols.clock)] : std::string_view();
      have_time = parse_date(f[static_cast<std::size_t>(cols.date)], clock, r.t);
    }
    if (!have_time) {
      const std::string_view s = f[static_cast<std::size_t>(cols.time >= 0 ? cols.time : cols.date)];
      ctx.defect(s.empty() ? Defect::missing_field : Defect::malformed_line, line_no,
                 "time '" + std::string(s.substr(0, 40)) + "' is not a timestamp or a calendar date", "dropped");
      report.rows_dropped++;
      continue;
    }
    if (r.t < kMinPlausibleMs || r.t > kMaxPlausibleMs) {
      ctx.defect(Defect::wrong_units, line_no,
                 "time " + std::to_string(r.t) + " ms is outside 2009..2100 (wrong unit?)", "dropped");
      report.rows_dropped++;
      continue;
    }
    NumParse p{ctx, line_no};
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
      if (parse_number(f[static_cast<std::size_t>(cols.volume_quote)], vq) == NumStatus::ok && vq > 0 &&
          r.v > 0 && r.c > 0 && (r.c > 3.0 || r.c < 1.0 / 3.0)) {
        // Normal: base volume * price ~ quote volume. Swapped: quote volume * price ~ base volume.
        const double normal = std::fabs(std::log(r.v * r.c / vq));
        const double swapped = std::fabs(std::log(vq * r.c / r.v));
        if (swapped < std::log(3.0) && normal > std::log(3.0)) {
          const std::string detail = "volume columns swapped: base volume " + fmt(r.v) + " ~ quote volume " +
                                     fmt(vq) + " x close " + fmt(r.c);
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

void parse_json(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
                std::vector<Row>& rows) {
  report.format = "freqtrade_json";
  const std::int64_t cap = row_cap(options);
  std::size_t i = 0;
  std::int64_t line = 1;
  auto skip_ws = [&]() {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) {
      if (text[i] == '\n') ++line;
      ++i;
    }
  };
  auto bad = [&](const std::string& what) {
    fail("load: " + report.path + ": line " + std::to_string(line) + ": malformed_line: " + what +
         " (expected freqtrade JSON [[ts_ms, open, high, low, close, volume], ...])");
  };
  skip_ws();
  if (i >= text.size() || text[i] != '[') bad("the file does not start with '['");
  ++i;
  std::int64_t candle = 0;
  double vals[6];
  std::string_view raw[6];
  while (true) {
    skip_ws();
    if (i >= text.size()) bad("unexpected end of file");
    if (text[i] == ']') break;
    if (text[i] == ',') {
      ++i;
      continue;
    }
    if (text[i] != '[') bad(std::string("unexpected character '") + text[i] + "'");
    ++i;
    ++candle;
    const std::int64_t row_line = line;
    int n = 0;
    bool row_ok = true;
    while (true) {
      skip_ws();
      if (i >= text.size()) bad("unexpected end of file inside candle " + std::to_string(candle));
      if (text[i] == ']') {
        ++i;
        break;
      }
      if (text[i] == ',') {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < text.size() && text[j] != ',' && text[j] != ']' && text[j] != '\n') ++j;
      std::string_view tok = trim(text.substr(i, j - i));
      if (n < 6) raw[n] = tok;
      ++n;
      i = j;
    }
    if (cap > 0 && report.rows_read >= cap) continue;
    report.rows_read++;
    const std::string where = "candle " + std::to_string(candle) + ": ";
    if (n < 6) {
      ctx.defect(Defect::missing_field, row_line, where + std::to_string(n) + " fields, need 6", "dropped");
      report.rows_dropped++;
      continue;
    }
    NumParse p{ctx, row_line};
    static const char* names[6] = {"time", "open", "high", "low", "close", "volume"};
    for (int k = 0; k < 6 && row_ok; ++k) {
      vals[k] = p.get(raw[k], names[k]);
      row_ok = p.ok;
    }
    if (!row_ok) {
      report.rows_dropped++;
      continue;
    }
    Row r;
    int unit = 0;
    r.t = unix_to_ms(vals[0], unit);
    r.o = vals[1], r.h = vals[2], r.l = vals[3], r.c = vals[4], r.v = vals[5];
    r.line = row_line;
    r.candle = candle;
    if (r.t < kMinPlausibleMs || r.t > kMaxPlausibleMs) {
      ctx.defect(Defect::wrong_units, row_line, where + "time " + std::to_string(r.t) + " ms is outside 2009..2100",
                 "dropped");
      report.rows_dropped++;
      continue;
    }
    if (!validate_row(r, ctx, report)) {
      report.rows_dropped++;
      continue;
    }
    rows.push_back(r);
  }
  report.lines = line;
}

// Orders rows ascending by time under the policy; rows keep their source line numbers.
void order_rows(std::vector<Row>& rows, Context& ctx, LoadReport& report) {
  std::int64_t inc = 0, dec = 0;
  for (std::size_t k = 1; k < rows.size(); ++k) {
    if (rows[k].t > rows[k - 1].t) ++inc;
    else if (rows[k].t < rows[k - 1].t) ++dec;
  }
  report.descending = dec > inc;
  const bool desc = report.descending;
  auto forward = [desc](std::int64_t a, std::int64_t b) { return desc ? b < a : a < b; };
  if (ctx.policy() == ValidationPolicy::repair) {
    // Report every defect, then sort and keep the first occurrence (in file order) of each time.
    for (std::size_t k = 1; k < rows.size(); ++k) {
      if (rows[k].t == rows[k - 1].t)
        ctx.note(Defect::duplicate_timestamp, rows[k].line, where(rows[k]) + "time " + std::to_string(rows[k].t) + " repeats line " +
                 std::to_string(rows[k - 1].line), "repaired: first occurrence kept");
      else if (!forward(rows[k - 1].t, rows[k].t))
        ctx.note(Defect::non_monotonic_timestamp, rows[k].line,
                 where(rows[k]) + "time " + std::to_string(rows[k].t) + " goes " + (desc ? "forward" : "backward") +
                 " from line " + std::to_string(rows[k - 1].line), "repaired: rows sorted");
    }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.t < b.t; });
    std::vector<Row> kept;
    kept.reserve(rows.size());
    for (std::size_t k = 0; k < rows.size(); ++k) {
      if (!kept.empty() && kept.back().t == rows[k].t) {
        // Keep the row that came first in the file.
        if (rows[k].line < kept.back().line) kept.back() = rows[k];
        report.rows_dropped++;
        continue;
      }
      kept.push_back(rows[k]);
    }
    rows.swap(kept);
    return;
  }
  std::vector<Row> kept;
  kept.reserve(rows.size());
  for (const Row& r : rows) {
    if (!kept.empty()) {
      const Row& prev = kept.back();
      if (r.t == prev.t) {
        ctx.defect(Defect::duplicate_timestamp, r.line,
                   where(r) + "time " + std::to_string(r.t) + " repeats line " + std::to_string(prev.line), "dropped");
        report.rows_dropped++;
        continue;
      }
      if (!forward(prev.t, r.t)) {
        ctx.defect(Defect::non_monotonic_timestamp, r.line,
                   where(r) + "time " + std::to_string(r.t) + " goes " + (desc ? "forward" : "backward") + " from line " +
                       std::to_string(prev.line) + " in a " + (desc ? "descending" : "ascending") + " file",
                   "dropped");
        report.rows_dropped++;
        continue;
      }
    }
    kept.push_back(r);
  }
  if (desc) std::reverse(kept.begin(), kept.end());
  rows.swap(kept);
}

std::string strip_ext(std::string name) {
  for (const char* ext : {".gz", ".json", ".csv", ".txt", ".feather"}) {
    const std::size_t n = std::strlen(ext);
    if (name.size() > n && lower(name.substr(name.size() - n)) == ext) name.resize(name.size() - n);
  }
  return name;
}

}  // namespace

const char* defect_name(Defect d) {
  switch (d) {
    case Defect::malformed_line: return "malformed_line";
    case Defect::missing_field: return "missing_field";
    case Defect::non_finite: return "non_finite";
    case Defect::non_positive_price: return "non_positive_price";
    case Defect::high_below_open_close: return "high_below_open_close";
    case Defect::low_above_open_close: return "low_above_open_close";
    case Defect::negative_volume: return "negative_volume";
    case Defect::duplicate_timestamp: return "duplicate_timestamp";
    case Defect::non_monotonic_timestamp: return "non_monotonic_timestamp";
    case Defect::gap: return "gap";
    case Defect::wrong_units: return "wrong_units";
    case Defect::not_ohlc: return "not_ohlc";
  }
  return "unknown";
}

std::int64_t LoadReport::count(Defect d) const {
  const auto k = static_cast<std::size_t>(d);
  return k < defect_counts.size() ? defect_counts[k] : 0;
}

std::string LoadReport::summary() const {
  std::ostringstream s;
  s << path << ": " << format << (descending ? " (descending)" : "") << ", " << rows_read << " rows read, "
    << rows_kept << " kept, " << rows_dropped << " dropped, " << rows_repaired << " repaired, " << gaps
    << " gaps (" << missing_bars << " missing bars, " << bars_filled << " filled)";
  for (int d = 0; d < kDefectCount; ++d) {
    const std::int64_t n = count(static_cast<Defect>(d));
    if (n == 0) continue;
    s << "\n  " << defect_name(static_cast<Defect>(d)) << ": " << n;
    for (const LoadIssue& i : issues)
      if (i.defect == static_cast<Defect>(d)) {
        s << " (first at line " << i.line << ": " << i.detail << "; " << i.action << ")";
        break;
      }
  }
  return s.str();
}

namespace {

[[noreturn]] void too_large(const std::string& path, const char* what, std::int64_t limit) {
  fail("load: " + path + ": " + what + " more than " + std::to_string(limit) +
       " bytes, the limit on one data file (LoadOptions::max_decompressed_bytes; raise it if the file "
       "is genuine)");
}

}  // namespace

std::string read_file(const std::string& path, std::int64_t max_bytes) {
  if (max_bytes < 1) fail("load: max_decompressed_bytes must be >= 1, got " + std::to_string(max_bytes));
  // Refuse what is not a regular file before reading: a directory reads as an error, a device such as
  // /dev/zero never ends, a FIFO blocks (hence O_NONBLOCK on open).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("load: cannot open " + path + " (" + std::strerror(errno) + "; check the path)");
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("load: cannot stat " + path + " (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) fail("load: " + path + " is a directory, not a data file (name the files inside it)");
  if (!S_ISREG(st.st_mode)) fail("load: " + path + " is not a regular file (a device, FIFO or socket); give a data file");
  if (st.st_size > max_bytes) too_large(path, "the file has", max_bytes);
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("load: cannot read " + path + " (" + std::strerror(errno) + ")");
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  bytes.resize(got);
  if (bytes.size() < 2 || static_cast<unsigned char>(bytes[0]) != 0x1f || static_cast<unsigned char>(bytes[1]) != 0x8b)
    return bytes;
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) fail("load: " + path + ": zlib inflateInit failed");
  struct InflateEnd {
    z_stream* zs;
    ~InflateEnd() { inflateEnd(zs); }
  } ender{&zs};
  const auto limit = static_cast<std::size_t>(max_bytes);
  std::string out;
  std::size_t produced = 0;  // zs.total_out is a uLong and is reset between gzip members
  std::size_t consumed = 0;
  // The buffer grows geometrically up to limit + 1 bytes: one byte past the limit proves the excess.
  out.resize(std::min(bytes.size() * 4 + 1024, limit + 1));
  while (true) {
    if (produced == out.size()) {
      if (out.size() > limit) too_large(path, "gzip data decompresses to", max_bytes);
      out.resize(std::min(out.size() * 2, limit + 1));
    }
    const std::size_t in_chunk = std::min<std::size_t>(bytes.size() - consumed, 1u << 30);
    const std::size_t out_chunk = std::min<std::size_t>(out.size() - produced, 1u << 30);
    zs.next_in = reinterpret_cast<Bytef*>(bytes.data() + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members: continue with the next one.
      if (consumed < bytes.size()) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      fail("load: " + path + ": gzip data is corrupt (zlib error " + std::to_string(rc) + ")");
    }
    if (rc == Z_BUF_ERROR && consumed == bytes.size() && produced < out.size()) {
      fail("load: " + path + ": gzip data is truncated");
    }
  }
  if (produced > limit) too_large(path, "gzip data decompresses to", max_bytes);
  out.resize(produced);
  return out;
}

std::int64_t interval_to_ms(const std::string& interval) {
  const std::string s = lower(interval);
  if (s == "d" || s == "day" || s == "daily") return 86'400'000;
  if (s == "hour" || s == "hourly" || s == "1hr" || s == "h") return 3'600'000;
  if (s == "minute" || s == "min") return 60'000;
  std::size_t k = 0;
  while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
  if (k == 0 || k == s.size()) return 0;
  const std::int64_t n = std::atoll(s.substr(0, k).c_str());
  const std::string u = s.substr(k);
  if (u == "s") return n * 1000;
  if (u == "m" || u == "min") return n * 60'000;
  if (u == "h" || u == "hr") return n * 3'600'000;
  if (u == "d") return n * 86'400'000;
  if (u == "w") return n * 7 * 86'400'000;
  return 0;
}

std::string ms_to_interval(std::int64_t ms) {
  if (ms <= 0) return "";
  if (ms % (7 * 86'400'000LL) == 0) return std::to_string(ms / (7 * 86'400'000LL)) + "w";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  return std::to_string(ms / 1000) + "s";
}

NameInfo infer_name(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  name = strip_ext(name);
  std::vector<std::string> tokens;
  std::string cur;
  for (char ch : name) {
    if (ch == '_' || ch == '-' || ch == ' ' || ch == '.') {
      if (!cur.empty()) tokens.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) tokens.push_back(cur);
  static const char* exchanges[] = {"binance", "bybit", "kucoin", "gemini", "bitstamp", "coinbase",
                                    "kraken", "bitfinex", "poloniex", "bittrex", "okx", "simx"};
  static const char* quotes[] = {"USDT", "USDC", "BUSD", "USD", "BTC", "ETH", "EUR", "BNB"};
  NameInfo info;
  std::vector<std::string> upper;
  bool futures = false;
  for (const std::string& t : tokens) {
    const std::string l = lower(t);
    if (info.interval.empty() && interval_to_ms(l) > 0 && l != "h" && l != "d" && l != "min") {
      info.interval = ms_to_interval(interval_to_ms(l));
      continue;
    }
    if (info.interval.empty() && l == "d" && &t == &tokens.back()) {
      info.interval = "1d";
      continue;
    }
    bool is_exchange = false;
    for (const char* e : exchanges)
      if (l == e || (l.rfind(e, 0) == 0 && l.size() > std::strlen(e) && std::isdigit(static_cast<unsigned char>(l[std::strlen(e)])))) {
        if (info.exchange.empty()) info.exchange = l;
        is_exchange = true;
      }
    if (is_exchange) continue;
    if (l == "futures") futures = true;
    bool all_upper = !t.empty() && !all_digits(t);
    for (char ch : t)
      if (!(std::isupper(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)))) all_upper = false;
    if (all_upper) upper.push_back(t);
  }
  if (upper.size() >= 2) {
    info.symbol = upper[0] + "/" + upper[1];
  } else if (upper.size() == 1) {
    const std::string& s = upper[0];
    info.symbol = s;
    for (const char* q : quotes) {
      const std::size_t n = std::strlen(q);
      if (s.size() > n && s.substr(s.size() - n) == q) {
        info.symbol = s.substr(0, s.size() - n) + "/" + q;
        break;
      }
    }
  } else {
    info.symbol = name;
  }
  if (info.exchange.empty()) info.exchange = "unknown";
  if (futures) info.exchange += "-futures";
  return info;
}

LoadResult parse_series(const std::string& text, const std::string& name, const LoadOptions& options) {
  LoadResult result;
  LoadReport& report = result.report;
  report.path = name;
  Context ctx(name, options, report);
  std::vector<Row> rows;
  std::size_t first = 0;
  while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first]))) ++first;
  if (first < text.size() && text[first] == '[')
    parse_json(text, ctx, report, options, rows);
  else
    parse_csv(text, ctx, report, options, rows);
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
        ctx.note(Defect::gap, r.line,
                 std::to_string(missing) + " missing bar(s) before time " + std::to_string(r.t),
                 fill ? "filled " + std::to_string(missing) + " bar(s) with the previous close" : "reported");
        if (fill && report.bars_filled + missing > options.max_fill_bars) {
          fail("load: " + name + ": line " + std::to_string(r.line) + ": gap of " +
               std::to_string(missing) + " missing bars is too long to forward-fill (limit " +
               std::to_string(options.max_fill_bars) +
               " bars per file, LoadOptions::max_fill_bars); fix the timestamps or load without "
               "forward_fill_gaps");
        }
        if (fill) {
          const double c = rows[k - 1].c;
          for (std::int64_t m = 1; m <= missing; ++m) s.push_back(rows[k - 1].t + m * s.interval_ms, c, c, c, c, 0.0, true);
          report.bars_filled += missing;
        }
      }
    }
    s.push_back(r.t, r.o, r.h, r.l, r.c, r.v);
  }
  report.rows_kept = static_cast<std::int64_t>(rows.size());
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
