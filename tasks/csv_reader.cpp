#include "tasks/csv_reader.h"

#include "kernels/error.h"
#include "tasks/text.h"

namespace metatape::tasks {

namespace {

bool is_end(std::string_view text, std::size_t k) { return k >= text.size() || text[k] == '\n' || text[k] == '\r'; }

// Reads one record of `text` from `i` up to (not including) its line end, calling
// emit(value, doubled) per field (`doubled`: a quoted field with "" pairs still in `value`). Advances
// `i` to the line end (or the end of the text) and `line` over the line ends inside quoted fields.
// Returns whether any field was quoted.
template <class Emit>
bool scan_record(std::string_view text, std::size_t& i, std::int64_t& line, const std::string& name, Emit&& emit) {
  const std::size_t n = text.size();
  bool quoted_any = false;
  while (true) {  // one field per iteration
    std::size_t j = i;
    while (j < n && (text[j] == ' ' || text[j] == '\t')) ++j;
    if (j < n && text[j] == '"') {
      quoted_any = true;
      const std::int64_t open_line = line;
      const std::size_t content = j + 1;
      std::size_t k = content;
      bool doubled = false;
      while (true) {
        if (k >= n)
          fail("load: " + name + ": line " + std::to_string(open_line) +
               ": malformed_line: unterminated quoted field (the '\"' opened here is never closed; close it, "
               "or double a quote inside a quoted field as \"\")");
        if (text[k] == '"') {
          if (k + 1 < n && text[k + 1] == '"') {
            doubled = true;
            k += 2;
            continue;
          }
          break;
        }
        if (text[k] == '\n' || (text[k] == '\r' && !(k + 1 < n && text[k + 1] == '\n'))) ++line;
        ++k;
      }
      emit(text.substr(content, k - content), doubled);
      i = k + 1;
      while (i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (!is_end(text, i) && text[i] != ',')
        fail("load: " + name + ": line " + std::to_string(line) + ": malformed_line: '" + std::string(1, text[i]) +
             "' after the closing quote of a quoted field (a field is either all quoted or not quoted; "
             "double a quote inside a quoted field as \"\")");
    } else {
      std::size_t k = j;
      while (!is_end(text, k) && text[k] != ',') ++k;
      emit(text::trim_blank(text.substr(j, k - j)), false);
      i = k;
    }
    if (i < n && text[i] == ',') {
      ++i;
      continue;
    }
    return quoted_any;
  }
}

}  // namespace

CsvTable::CsvTable(std::string_view text, const std::string& name) : name_(name) {
  std::size_t i = 0;
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  const std::size_t n = text.size();
  std::int64_t line = 1;
  records_.reserve(n / 48 + 16);
  while (i < n) {
    const std::size_t start = i;
    const std::int64_t record_line = line;
    std::size_t fields = 0;
    const bool quoted = scan_record(text, i, line, name, [&fields](std::string_view, bool) { ++fields; });
    records_.push_back({text.substr(start, i - start), record_line, fields, quoted});
    if (i < n && text[i] == '\r') ++i;
    if (i < n && text[i] == '\n') ++i;
    ++line;
  }
  lines_ = line - 1;
}

void CsvTable::fields(std::size_t k, std::vector<std::string_view>& out) const {
  out.clear();
  const Record& r = records_[k];
  if (!r.quoted) {
    std::size_t start = 0;
    for (std::size_t i = 0; i <= r.raw.size(); ++i) {
      if (i == r.raw.size() || r.raw[i] == ',') {
        out.push_back(text::trim_blank(r.raw.substr(start, i - start)));
        start = i + 1;
      }
    }
    return;
  }
  unescaped_.clear();
  std::size_t i = 0;
  std::int64_t line = r.line;
  scan_record(r.raw, i, line, name_, [&](std::string_view value, bool doubled) {
    if (!doubled) {
      out.push_back(value);
      return;
    }
    std::string& u = unescaped_.emplace_back();
    u.reserve(value.size());
    for (std::size_t q = 0; q < value.size(); ++q) {
      u += value[q];
      if (value[q] == '"') ++q;  // the second quote of a pair
    }
    out.push_back(u);
  });
}

std::string_view CsvTable::field(std::size_t k, std::size_t i) const {
  fields(k, scratch_);
  return scratch_[i];
}

}  // namespace metatape::tasks
