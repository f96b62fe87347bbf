#include "tasks/calendar.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "tasks/text.h"

namespace metatape::tasks::calendar {

using text::NumStatus;
using text::to_int;

bool parse_clock(std::string_view s, std::int64_t& ms) {
  s = text::trim_value(s);
  if (s.empty()) {
    ms = 0;
    return true;
  }
  const std::string l = text::lower(s);
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
    if (am)
      hour = hour == 12 ? 0 : hour;
    else
      hour = hour == 12 ? 12 : hour + 12;
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
      if (text::parse_number(sec.substr(dot), f) != NumStatus::ok) return false;
      frac = f;
    }
  }
  if (hour > 23 || minute > 59 || second > 60) return false;
  ms = (hour * 3600 + minute * 60 + second) * 1000LL + static_cast<std::int64_t>(std::llround(frac * 1000));
  return true;
}

namespace {

// Strips a trailing UTC offset from a text that holds a clock ("...10:00+02:00", "...10:00Z").
// Returns false when an offset is present but malformed or out of range.
bool strip_offset(std::string_view& s, std::int64_t& offset_ms) {
  offset_ms = 0;
  for (const char* suffix : {"Z", " UTC", "UTC"}) {
    const std::size_t n = std::strlen(suffix);
    if (s.size() > n && s.substr(s.size() - n) == suffix) {
      s.remove_suffix(n);
      return true;
    }
  }
  // A sign after the clock's first ':' ("HH:MM...+hh:mm"): dates' own '-' come before it.
  const std::size_t colon = s.find(':');
  if (colon == std::string_view::npos) return true;
  const std::size_t sign = s.find_first_of("+-", colon);
  if (sign == std::string_view::npos) return true;
  std::string_view off = s.substr(sign + 1);
  if (off.empty() || off.find_first_not_of("0123456789:") != std::string_view::npos) return true;  // "07-PM"
  int hh = 0, mm = 0;
  if (off.size() == 5 && off[2] == ':') {
    if (!to_int(off.substr(0, 2), hh) || !to_int(off.substr(3, 2), mm)) return false;
  } else if (off.size() == 4) {
    if (!to_int(off.substr(0, 2), hh) || !to_int(off.substr(2, 2), mm)) return false;
  } else if (off.size() == 2) {
    if (!to_int(off, hh)) return false;
  } else {
    return false;
  }
  if (hh > 14 || mm > 59 || (hh == 14 && mm > 0)) return false;
  offset_ms = (hh * 60 + mm) * 60'000LL * (s[sign] == '-' ? -1 : 1);
  s = s.substr(0, sign);
  return true;
}

}  // namespace

bool parse_date(std::string_view s, std::string_view clock, std::int64_t& ms) {
  s = text::trim_value(s);
  if (s.size() > 4 && s.substr(s.size() - 4) == " UTC") s.remove_suffix(4);
  if (s.empty()) return false;
  double serial = 0;
  if (text::parse_number(s, serial) == NumStatus::ok) {
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
  std::int64_t offset_ms = 0;
  if (!time.empty() && !strip_offset(time, offset_ms)) return false;
  int y = 0, m = 0, d = 0;
  if (date.find('/') != std::string_view::npos) {
    const std::size_t a = date.find('/'), b = date.find('/', a + 1);
    if (b == std::string_view::npos) return false;
    if (!to_int(date.substr(0, a), m) || !to_int(date.substr(a + 1, b - a - 1), d) || !to_int(date.substr(b + 1), y))
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
  if (y < 1970 || y > 2100 || m < 1 || m > 12 || d < 1 || d > 31) return false;
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(m)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return false;  // e.g. Feb 30, or Feb 29 outside a leap year
  std::int64_t clock_ms = 0;
  if (!parse_clock(time.empty() ? clock : time, clock_ms)) return false;
  const auto day = std::chrono::sys_days{ymd};
  ms = std::chrono::duration_cast<std::chrono::milliseconds>(day.time_since_epoch()).count() + clock_ms - offset_ms;
  return true;
}

std::string iso_utc(std::int64_t ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds{ms}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const auto minutes_in_day = duration_cast<minutes>(t - day).count();
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02lld:%02lld UTC", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long long>(minutes_in_day / 60), static_cast<long long>(minutes_in_day % 60));
  return buf;
}

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

}  // namespace metatape::tasks::calendar
