// CSV candles: recognising the layout of a market CSV and reading its rows (internal to tasks/).
// Contract: parse_csv splits the text into RFC 4180 records (tasks/csv_reader.h; quoted fields,
// embedded commas and quotes, CRLF, a BOM), skips CryptoDataDownload banner lines, finds the header at
// the top (or, spreadsheet-sorted, among the last five records) and maps its columns by name (see
// tasks/loaders.h for the names), else infers the layout from the first data row's shape (12-column
// Binance klines, 8/9-column CDD rows, 5/6-column plain rows). It then turns every data record into a
// Row through the calendar and number parsers and validate_row, recording each defect through the
// Context (which refuses under policy fail). A file whose layout it cannot recognise is refused,
// naming the line and the layouts it knows. Values are also trimmed of blanks and stray quotes.
#pragma once

#include <string_view>
#include <vector>

#include "tasks/validation.h"

namespace metatape::tasks {

void parse_csv(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
               std::vector<Row>& rows);

}  // namespace metatape::tasks
