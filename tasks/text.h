// Text helpers shared by the market-data loaders (internal to tasks/): ASCII lower-casing, trimming,
// strict number parsing and small integer fields. Nothing here allocates except lower() and fmt().
// Contract: parse_number accepts exactly what std::from_chars accepts (plus a leading '+'), classifies
// "null"/"none"/"na"/"n/a" and "" as empty, and never throws.
#pragma once

#include <string>
#include <string_view>

namespace metatape::tasks::text {

std::string lower(std::string_view s);

// Removes spaces and tabs at both ends (and a trailing '\r').
std::string_view trim_blank(std::string_view s);

// trim_blank, and also single or double quotes at both ends: for values written quoted outside a
// CSV quoting context (e.g. a JSON string "100.5", or a CSV cell 'BTC').
std::string_view trim_value(std::string_view s);

enum class NumStatus { ok, empty, bad, non_finite };
NumStatus parse_number(std::string_view s, double& value);

bool all_digits(std::string_view s);
// Non-negative decimal integer of at most 9 digits.
bool to_int(std::string_view s, int& v);

// A double with 10 significant digits, for messages.
std::string fmt(double v);

}  // namespace metatape::tasks::text
