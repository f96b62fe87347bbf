// An RFC 4180 CSV reader for the market-data loaders (internal to tasks/).
//
// Why our own: Debian's libcsv (libcsv-dev 3.0.3, LGPL-2.1, last upstream release 2011) is a C
// callback API that reports neither the line a record starts on nor where an unterminated quote
// opened, and would add a shared-library dependency for ~150 lines of code; the other packaged CSV
// parsers are for Haskell, OCaml or Rust. This reader is small and allocation-light (records are
// indexed once, fields split on demand as views into the text; only a quoted field with doubled
// quotes is copied) and tested in
// tests/tasks/csv_reader_test.cpp and by fuzz/fuzz_csv.cpp.
//
// Contract:
//   - records end at LF, CRLF or CR outside quotes; the last record may lack a line end;
//   - a UTF-8 byte-order mark at the start is skipped;
//   - the separator is ',' ; a field is quoted when its first non-blank character is '"': inside it
//     commas, line ends and doubled quotes ("") are data, and blanks after the closing quote are
//     ignored; any other character after the closing quote is an error;
//   - unquoted fields are trimmed of spaces and tabs (a '"' inside an unquoted field is kept as
//     data, as most writers and readers do);
//   - an empty line (or one of blanks only) is a record with one empty field;
//   - errors throw metatape::Error "load: <name>: line <n>: malformed_line: <what> (<fix>)", where
//     <n> is the 1-based line the offending quote opened on.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace metatape::tasks {

class CsvTable {
 public:
  // Splits all of `text` (which must outlive the table) into records, checking every quote; `name`
  // names the file in errors. Memory: one small entry per record; fields are split on demand.
  CsvTable(std::string_view text, const std::string& name);

  std::size_t size() const { return records_.size(); }
  // 1-based line where record k starts in the text (a quoted field may span lines).
  std::int64_t line(std::size_t k) const { return records_[k].line; }
  std::size_t field_count(std::size_t k) const { return records_[k].fields; }
  // The fields of record k, unquoted and unescaped, into `out`. The views point into the text, or,
  // for a quoted field with doubled quotes, into the table: those stay valid until the next call.
  void fields(std::size_t k, std::vector<std::string_view>& out) const;
  // Field i of record k (i < field_count(k)); valid until the next call of field() or fields().
  std::string_view field(std::size_t k, std::size_t i) const;
  // The raw text of record k (without its line end), for banner detection and messages.
  std::string_view raw(std::size_t k) const { return records_[k].raw; }
  // Lines in the text (the last line counts even without a line end).
  std::int64_t lines() const { return lines_; }

 private:
  struct Record {
    std::string_view raw;
    std::int64_t line;
    std::size_t fields;
    bool quoted;  // some field is quoted: split with the quote rules, else on commas
  };
  std::string name_;
  std::vector<Record> records_;
  std::int64_t lines_ = 0;
  mutable std::deque<std::string> unescaped_;  // a deque never moves its strings, so views stay put
  mutable std::vector<std::string_view> scratch_;
};

}  // namespace metatape::tasks
