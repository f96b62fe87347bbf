// Calendar text and unix numbers to UTC milliseconds, for the market-data loaders (internal to tasks/).
// Contract:
//   parse_date accepts, and nothing else (returns false otherwise, never throws):
//     "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.fff]]", the same with 'T' between date and time,
//     "YYYY-MM-DD HH-AM" / "HH-PM" / "HH AM" / "H:MM PM", "M/D/YYYY[ H:MM[:SS]]" (also "M/D/YY"),
//     "DD-MM-YY[ time]", an Excel serial day number in 20000..80000 ("44694.5"),
//     each optionally followed by a UTC offset: "Z", " UTC", "+HH:MM", "-HH:MM", "+HHMM", "-HHMM"
//     (a non-zero offset is applied: "10:00+02:00" is 08:00 UTC);
//     `clock` is a separate time-of-day column, used when the date text has no time.
//   Refused: months outside 1..12, days outside the month (Feb 29 only in leap years), years outside
//   1970..2100, hours > 23, minutes > 59, seconds > 60 (a leap second reads as :60), offsets > 14:00.
//   Civil-date arithmetic is std::chrono (year_month_day, sys_days).
//   unix_to_ms reads a unix number as seconds (< 1e11), milliseconds (< 1e14), microseconds (< 1e17)
//   or nanoseconds, decided per value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace metatape::tasks::calendar {

inline constexpr std::int64_t min_plausible_ms = 1'230'768'000'000;  // 2009-01-01
inline constexpr std::int64_t max_plausible_ms = 4'102'444'800'000;  // 2100-01-01

// "HH:MM[:SS[.fff]]", "H:MM", "HH-AM", "HH-PM", "HH AM", "H:MM PM"; "" is midnight. Milliseconds
// into the day.
bool parse_clock(std::string_view s, std::int64_t& ms);

bool parse_date(std::string_view s, std::string_view clock, std::int64_t& ms);

// "YYYY-MM-DD HH:MM UTC" for messages (std::chrono civil-date arithmetic; any int64 ms works).
std::string iso_utc(std::int64_t ms);

// unit: 0 seconds, 1 milliseconds, 2 microseconds, 3 nanoseconds.
std::int64_t unix_to_ms(double v, int& unit);

}  // namespace metatape::tasks::calendar
