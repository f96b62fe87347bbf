#include <doctest/doctest.h>

#include <string>

#include "tasks/calendar.h"

using namespace metatape::tasks;

namespace {

constexpr std::int64_t kDay = 86'400'000;

// ms of a date text, or -1 when refused.
std::int64_t ms(const std::string& s, const std::string& clock = "") {
  std::int64_t v = 0;
  return calendar::parse_date(s, clock, v) ? v : -1;
}

}  // namespace

TEST_CASE("calendar: the accepted formats") {
  const std::int64_t d = 1'609'459'200'000;  // 2021-01-01 00:00 UTC
  CHECK(ms("2021-01-01") == d);
  CHECK(ms("2021-01-01 13:45") == d + (13 * 60 + 45) * 60'000);
  CHECK(ms("2021-01-01T13:45:30") == d + ((13 * 60 + 45) * 60 + 30) * 1000);
  CHECK(ms("2021-01-01 13:45:30.250") == d + ((13 * 60 + 45) * 60 + 30) * 1000 + 250);
  CHECK(ms("2021-01-01 07-PM") == d + 19 * 3'600'000);
  CHECK(ms("2021-01-01 12-AM") == d);
  CHECK(ms("2021-01-01 12 PM") == d + 12 * 3'600'000);
  CHECK(ms("1/1/2021 1:05") == d + 65 * 60'000);
  CHECK(ms("1/1/21") == d);
  CHECK(ms("01-01-21", "08:00") == d + 8 * 3'600'000);  // DD-MM-YY with a separate time column
  CHECK(ms("44197") == d);                              // Excel serial day
  CHECK(ms("44197.5") == d + kDay / 2);
  CHECK(ms("'2021-01-01'") == d);
}

TEST_CASE("calendar: UTC offsets are applied; malformed or impossible ones refused") {
  const std::int64_t t = 1'609'459'200'000 + 10 * 3'600'000;  // 2021-01-01 10:00 UTC
  CHECK(ms("2021-01-01T10:00:00Z") == t);
  CHECK(ms("2021-01-01 10:00:00 UTC") == t);
  CHECK(ms("2021-01-01T10:00:00+00:00") == t);
  CHECK(ms("2021-01-01T10:00:00+0000") == t);
  CHECK(ms("2021-01-01T12:00:00+02:00") == t);
  CHECK(ms("2021-01-01T04:30:00-05:30") == t);
  CHECK(ms("2021-01-01T05:00-0500") == t);
  CHECK(ms("2021-01-01T00:30+00:30") == t - 10 * 3'600'000);
  CHECK(ms("2021-01-01T10:00:00+15:00") == -1);
  CHECK(ms("2021-01-01T10:00:00+02:61") == -1);
  CHECK(ms("2021-01-01T10:00:00+2:00") == -1);
}

TEST_CASE("calendar: leap days") {
  CHECK(ms("2020-02-29") == ms("2020-02-28") + kDay);
  CHECK(ms("2020-03-01") == ms("2020-02-29") + kDay);
  CHECK(ms("2000-02-29") >= 0);   // divisible by 400: leap
  CHECK(ms("2019-02-29") == -1);  // not a leap year
  CHECK(ms("2100-02-29") == -1);  // divisible by 100, not by 400
  CHECK(ms("2/29/2024") == ms("2024-02-29"));
  CHECK(ms("29-02-23") == -1);
}

TEST_CASE("calendar: the 1970 boundary and the year range") {
  CHECK(ms("1970-01-01") == 0);
  CHECK(ms("1970-01-01 00:00:01") == 1000);
  CHECK(ms("1970-01-02") == kDay);
  CHECK(ms("1969-12-31") == -1);
  CHECK(ms("2100-12-31") >= 0);
  CHECK(ms("2101-01-01") == -1);
}

TEST_CASE("calendar: out-of-range months, days and clocks are refused") {
  for (const char* bad : {"2021-00-10",
                          "2021-13-10",
                          "2021-01-00",
                          "2021-01-32",
                          "2021-04-31",
                          "2021-02-30",
                          "13/1/2021",
                          "1/32/2021",
                          "2021-01-01 24:00",
                          "2021-01-01 10:60",
                          "2021-01-01 10:00:61",
                          "2021-01-01 13-PM",
                          "2021-01-01 0-AM",
                          "2021-01",
                          "2021/01/01",
                          "tomorrow",
                          "",
                          "19999",
                          "80001",
                          "2019-12-15-07"})
    CHECK_MESSAGE(ms(bad) == -1, bad);
  CHECK(ms("2021-01-01 23:59:60") >= 0);  // a leap second reads as :60
}

TEST_CASE("calendar: unix numbers in seconds, ms, µs and ns") {
  int unit = -1;
  CHECK(calendar::unix_to_ms(1609459200.0, unit) == 1'609'459'200'000);
  CHECK(unit == 0);
  CHECK(calendar::unix_to_ms(1609459200000.0, unit) == 1'609'459'200'000);
  CHECK(unit == 1);
  CHECK(calendar::unix_to_ms(1609459200000000.0, unit) == 1'609'459'200'000);
  CHECK(unit == 2);
  CHECK(calendar::unix_to_ms(1609459200000000000.0, unit) == 1'609'459'200'000);
  CHECK(unit == 3);
}

TEST_CASE("calendar: iso_utc formats what parse_date reads, across the 1970 boundary") {
  CHECK(calendar::iso_utc(0) == "1970-01-01 00:00 UTC");
  CHECK(calendar::iso_utc(-60'000) == "1969-12-31 23:59 UTC");
  CHECK(calendar::iso_utc(ms("2024-02-29 13:07")) == "2024-02-29 13:07 UTC");
}
