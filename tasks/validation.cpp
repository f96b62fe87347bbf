#include "tasks/validation.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "kernels/error.h"
#include "tasks/text.h"

namespace metatape::tasks {

using text::fmt;

std::string where(const Row& r) { return r.candle > 0 ? "candle " + std::to_string(r.candle) + ": " : std::string(); }

Context::Context(const std::string& name, const LoadOptions& options, LoadReport& report)
    : name_(name), options_(options), report_(report) {
  report_.defect_counts.assign(kDefectCount, 0);
  report_.repair_counts.assign(kDefectCount, 0);
  report_.repair_actions.assign(kDefectCount, std::string());
  report_.warning_counts.assign(kWarningCount, 0);
}

void Context::defect(Defect d, std::int64_t line, const std::string& detail, const char* action) {
  if (options_.policy == ValidationPolicy::fail) refuse(d, line, detail);
  note(d, line, detail, action);
}

void Context::note(Defect d, std::int64_t line, const std::string& detail, const std::string& action) {
  const auto k = static_cast<std::size_t>(d);
  report_.defect_counts[k]++;
  if (action.rfind("repaired", 0) == 0 && options_.policy == ValidationPolicy::repair) {
    report_.repair_counts[k]++;
    if (report_.repair_actions[k].empty()) report_.repair_actions[k] = action;
  }
  if (report_.issues.size() < options_.max_issues_kept) report_.issues.push_back({d, line, detail, action});
}

void Context::refuse(Defect d, std::int64_t line, const std::string& detail) const {
  fail("load: " + name_ + ": line " + std::to_string(line) + ": " + defect_name(d) + ": " + detail +
       " (policy fail refuses the file; fix the source or load with policy repair or drop)");
}

void Context::unusable(const std::string& why) const {
  std::string first;
  if (!report_.issues.empty()) {
    const LoadIssue& i = report_.issues.front();
    first = "; first defect at line " + std::to_string(i.line) + ": " + defect_name(i.defect) + ": " + i.detail;
  }
  fail("load: " + name_ + ": " + why + first + " (the file is not usable as OHLCV candles)");
}

double NumParse::get(std::string_view s, const char* what) {
  if (!ok) return 0;
  double v = 0;
  switch (text::parse_number(s, v)) {
    case text::NumStatus::ok:
      return v;
    case text::NumStatus::empty:
      ctx.defect(Defect::missing_field, line, prefix + what + " is empty", "dropped");
      break;
    case text::NumStatus::non_finite:
      ctx.defect(Defect::non_finite, line, prefix + what + " is '" + std::string(s) + "'", "dropped");
      break;
    case text::NumStatus::bad:
      ctx.defect(Defect::malformed_line, line,
                 prefix + what + " '" + std::string(s.substr(0, 40)) + "' is not a number", "dropped");
      break;
  }
  ok = false;
  return 0;
}

std::int64_t row_cap(const LoadOptions& options) {
  std::int64_t cap = options.max_rows > 0 ? options.max_rows : 0;
  if (const char* env = std::getenv("METATAPE_MAX_ROWS")) {
    const long long v = std::atoll(env);
    if (v > 0) cap = cap > 0 ? std::min<std::int64_t>(cap, v) : v;
  }
  return cap;
}

bool validate_row(Row& r, Context& ctx, LoadReport& report) {
  if (r.o != 0 && r.h == 0 && r.l == 0 && r.c == 0) {
    ctx.defect(Defect::not_ohlc, r.line,
               where(r) + "open " + fmt(r.o) +
                   " with high, low and close 0: a value series (e.g. a funding rate), not candles",
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

void order_rows(std::vector<Row>& rows, Context& ctx, LoadReport& report) {
  std::int64_t inc = 0, dec = 0;
  for (std::size_t k = 1; k < rows.size(); ++k) {
    if (rows[k].t > rows[k - 1].t)
      ++inc;
    else if (rows[k].t < rows[k - 1].t)
      ++dec;
  }
  report.descending = dec > inc;
  const bool desc = report.descending;
  auto forward = [desc](std::int64_t a, std::int64_t b) { return desc ? b < a : a < b; };
  if (ctx.policy() == ValidationPolicy::repair) {
    // Report every defect, then sort and keep the first occurrence (in file order) of each time.
    for (std::size_t k = 1; k < rows.size(); ++k) {
      if (rows[k].t == rows[k - 1].t) {
        rows[k].duplicate_noted = true;
        ctx.note(
            Defect::duplicate_timestamp, rows[k].line,
            where(rows[k]) + "time " + std::to_string(rows[k].t) + " repeats line " + std::to_string(rows[k - 1].line),
            "repaired: first occurrence kept");
      } else if (!forward(rows[k - 1].t, rows[k].t))
        ctx.note(Defect::non_monotonic_timestamp, rows[k].line,
                 where(rows[k]) + "time " + std::to_string(rows[k].t) + " goes " + (desc ? "forward" : "backward") +
                     " from line " + std::to_string(rows[k - 1].line),
                 "repaired: rows sorted");
    }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.t < b.t; });
    std::vector<Row> kept;
    kept.reserve(rows.size());
    for (std::size_t k = 0; k < rows.size(); ++k) {
      if (!kept.empty() && kept.back().t == rows[k].t) {
        // Keep the row that came first in the file; report a drop its neighbour did not already.
        const bool keep_new = rows[k].line < kept.back().line;
        const Row& dropped = keep_new ? kept.back() : rows[k];
        const Row& first = keep_new ? rows[k] : kept.back();
        if (!dropped.duplicate_noted)
          ctx.note(Defect::duplicate_timestamp, dropped.line,
                   where(dropped) + "time " + std::to_string(dropped.t) + " repeats line " + std::to_string(first.line),
                   "repaired: first occurrence kept");
        if (keep_new) kept.back() = rows[k];
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
                   where(r) + "time " + std::to_string(r.t) + " goes " + (desc ? "forward" : "backward") +
                       " from line " + std::to_string(prev.line) + " in a " + (desc ? "descending" : "ascending") +
                       " file",
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

const char* defect_name(Defect d) {
  switch (d) {
    case Defect::malformed_line:
      return "malformed_line";
    case Defect::missing_field:
      return "missing_field";
    case Defect::non_finite:
      return "non_finite";
    case Defect::non_positive_price:
      return "non_positive_price";
    case Defect::high_below_open_close:
      return "high_below_open_close";
    case Defect::low_above_open_close:
      return "low_above_open_close";
    case Defect::negative_volume:
      return "negative_volume";
    case Defect::duplicate_timestamp:
      return "duplicate_timestamp";
    case Defect::non_monotonic_timestamp:
      return "non_monotonic_timestamp";
    case Defect::gap:
      return "gap";
    case Defect::wrong_units:
      return "wrong_units";
    case Defect::not_ohlc:
      return "not_ohlc";
  }
  return "unknown";
}

std::int64_t LoadReport::count(Defect d) const {
  const auto k = static_cast<std::size_t>(d);
  return k < defect_counts.size() ? defect_counts[k] : 0;
}

std::string LoadReport::summary() const {
  std::ostringstream s;
  s << path << ": " << format << (descending ? " (descending)" : "") << ", " << rows_read << " rows read, " << rows_kept
    << " kept, " << rows_dropped << " dropped, " << rows_repaired << " repaired, " << gaps << " gaps (" << missing_bars
    << " missing bars, " << bars_filled << " filled)";
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

std::int64_t LoadReport::repaired(Defect d) const {
  const auto k = static_cast<std::size_t>(d);
  return k < repair_counts.size() ? repair_counts[k] : 0;
}

std::int64_t LoadReport::count(Warning w) const {
  const auto k = static_cast<std::size_t>(w);
  return k < warning_counts.size() ? warning_counts[k] : 0;
}

std::string LoadReport::repairs_summary() const {
  std::ostringstream s;
  for (int d = 0; d < kDefectCount; ++d) {
    const std::int64_t n = repaired(static_cast<Defect>(d));
    if (n == 0) continue;
    s << defect_name(static_cast<Defect>(d)) << ": " << n << " row" << (n == 1 ? "" : "s") << " ("
      << repair_actions[static_cast<std::size_t>(d)] << ")\n";
  }
  return s.str();
}

std::string LoadReport::warnings_summary() const {
  std::ostringstream s;
  for (int w = 0; w < kWarningCount; ++w) {
    const std::int64_t n = count(static_cast<Warning>(w));
    if (n == 0) continue;
    std::int64_t shown = 0;
    for (const LoadWarning& x : warnings) {
      if (x.kind != static_cast<Warning>(w)) continue;
      ++shown;
      s << path << ": line";
      if (x.first_line == x.last_line)
        s << " " << x.first_line;
      else
        s << "s " << x.first_line << ".." << x.last_line;
      s << ": " << warning_name(x.kind) << ": " << x.detail << "\n";
    }
    if (n > shown)
      s << path << ": " << warning_name(static_cast<Warning>(w)) << ": " << (n - shown) << " more not shown\n";
  }
  return s.str();
}

}  // namespace metatape::tasks
