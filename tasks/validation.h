// Row-level validation shared by the CSV and JSON candle readers, the ordering of rows under the
// policy, and the load report (internal to tasks/, the report types are public in tasks/loaders.h).
// Contract:
//   - Context::defect records a defect and, under ValidationPolicy::fail, throws
//     "load: <file>: line <n>: <defect>: <detail> (policy fail refuses the file; ...)";
//     every note whose action starts with "repaired" is counted in LoadReport::repair_counts;
//   - validate_row drops a row that is not OHLC, has a non-positive price or a negative volume, and
//     repairs (policy repair) or drops (drop) one whose high/low lies inside the open/close envelope;
//   - order_rows leaves the rows ascending by time: a descending file is reversed; under repair,
//     out-of-order rows are sorted and duplicates keep their first occurrence in file order; under
//     drop they are dropped; under fail the first one refuses the file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tasks/loaders.h"

namespace metatape::tasks {

inline constexpr int kDefectCount = static_cast<int>(Defect::not_ohlc) + 1;
inline constexpr int kWarningCount = static_cast<int>(Warning::outlier_return) + 1;

struct Row {
  std::int64_t t = 0;
  double o = 0, h = 0, l = 0, c = 0, v = 0;
  std::int64_t line = 0;
  std::int64_t candle = 0;       // 1-based item number in JSON files (their lines can hold many candles)
  bool duplicate_noted = false;  // order_rows: already reported as a duplicate of its neighbour
};

// "candle 17: " for JSON rows, "" for CSV rows.
std::string where(const Row& r);

class Context {
 public:
  Context(const std::string& name, const LoadOptions& options, LoadReport& report);
  // Records a defect; under policy fail throws.
  void defect(Defect d, std::int64_t line, const std::string& detail, const char* action);
  void note(Defect d, std::int64_t line, const std::string& detail, const std::string& action);
  [[noreturn]] void refuse(Defect d, std::int64_t line, const std::string& detail) const;
  [[noreturn]] void unusable(const std::string& why) const;
  ValidationPolicy policy() const { return options_.policy; }
  const LoadOptions& options() const { return options_; }
  const std::string& name() const { return name_; }

 private:
  const std::string& name_;
  const LoadOptions& options_;
  LoadReport& report_;
};

// Parses one numeric field; on a defect records it (missing_field, non_finite, malformed_line), sets
// ok = false and returns 0; later calls return 0 without recording.
struct NumParse {
  Context& ctx;
  std::int64_t line;
  std::string prefix;  // "candle 3: " for JSON rows
  bool ok = true;
  double get(std::string_view s, const char* what);
};

// Rows to read at most: LoadOptions::max_rows, capped by METATAPE_MAX_ROWS; 0 = all.
std::int64_t row_cap(const LoadOptions& options);

// Checks one row's values; returns false when the row must be dropped. May repair high/low.
bool validate_row(Row& r, Context& ctx, LoadReport& report);

// Orders rows ascending by time under the policy; rows keep their source line numbers.
void order_rows(std::vector<Row>& rows, Context& ctx, LoadReport& report);

}  // namespace metatape::tasks
