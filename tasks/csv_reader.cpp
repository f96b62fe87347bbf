#include "tasks/csv_reader.h"

#include "kernels/error.h"
#include "tasks/text.h"

namespace metatape::tasks {

CsvTable::CsvTable(std::string_view text, const std::string& name) {
  std::size_t i = 0;
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  const std::size_t n = text.size();
  std::int64_t line = 1;
  fields_.reserve(n / 8 + 16);
  line_.reserve(n / 48 + 16);
  raw_.reserve(n / 48 + 16);
  begin_.reserve(n / 48 + 16);
  auto is_end = [&](std::size_t k) { return k >= n || text[k] == '\n' || text[k] == '\r'; };
  // Consumes a line end at k (LF, CRLF or CR); returns the index after it.
  auto eat_end = [&](std::size_t k) {
    if (k < n && text[k] == '\r') ++k;
    if (k < n && text[k] == '\n') ++k;
    ++line;
    return k;
  };
  while (i < n) {
    const std::size_t record_start = i;
    const std::int64_t record_line = line;
    while (true) {  // one field per iteration
      std::size_t j = i;
      while (j < n && (text[j] == ' ' || text[j] == '\t')) ++j;
      if (j < n && text[j] == '"') {
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
          if (text[k] == '\n') ++line;
          else if (text[k] == '\r' && !(k + 1 < n && text[k + 1] == '\n')) ++line;
          ++k;
        }
        std::string_view value = text.substr(content, k - content);
        if (doubled) {
          std::string& u = unescaped_.emplace_back();
          u.reserve(value.size());
          for (std::size_t q = 0; q < value.size(); ++q) {
            u += value[q];
            if (value[q] == '"') ++q;  // the second quote of a pair
          }
          value = u;
        }
        fields_.push_back(value);
        i = k + 1;
        while (i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
        if (!is_end(i) && text[i] != ',')
          fail("load: " + name + ": line " + std::to_string(line) + ": malformed_line: '" +
               std::string(1, text[i]) +
               "' after the closing quote of a quoted field (a field is either all quoted or not quoted; "
               "double a quote inside a quoted field as \"\")");
      } else {
        std::size_t k = j;
        while (!is_end(k) && text[k] != ',') ++k;
        fields_.push_back(text::trim_blank(text.substr(j, k - j)));
        i = k;
      }
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      break;
    }
    raw_.push_back(text.substr(record_start, i - record_start));
    line_.push_back(record_line);
    begin_.push_back(fields_.size());
    if (i < n) i = eat_end(i);
    else ++line;
  }
  lines_ = line - 1;
}

void CsvTable::fields(std::size_t k, std::vector<std::string_view>& out) const {
  out.assign(fields_.begin() + static_cast<std::ptrdiff_t>(begin_[k]),
             fields_.begin() + static_cast<std::ptrdiff_t>(begin_[k + 1]));
}

}  // namespace metatape::tasks
