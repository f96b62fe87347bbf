// freqtrade JSON candles, [[ts_ms, open, high, low, close, volume], ...] (internal to tasks/).
// Contract: parse_json reads the text with nlohmann-json's SAX parser (no document is built, so
// memory stays proportional to the candles kept, and the text size is already bounded by
// LoadOptions::max_decompressed_bytes when it comes from read_file). Each candle is located by the line
// its '[' is on and its 1-based element number ("candle 17"). A text that is not JSON, not an array of
// arrays, or holds NaN / Infinity literals (not JSON; freqtrade writes null) is refused, naming the file,
// the line, the candle and what was expected. Inside a candle, numbers are values; null and "" are
// missing fields; a string is read as a number ("100.5"); anything else is a malformed field; fewer than
// 6 fields is missing_field; each of those is a row defect handled by the policy. Rows then go
// through validate_row like CSV rows. Reading stops after the row cap (row_cap()).
#pragma once

#include <string_view>
#include <vector>

#include "tasks/validation.h"

namespace metatape::tasks {

void parse_json(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
                std::vector<Row>& rows);

}  // namespace metatape::tasks
