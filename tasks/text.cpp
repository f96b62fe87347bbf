#include "tasks/text.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>

namespace metatape::tasks::text {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim_blank(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string_view trim_value(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"' || s.front() == '\''))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '"' || s.back() == '\'' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

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

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

}  // namespace metatape::tasks::text
