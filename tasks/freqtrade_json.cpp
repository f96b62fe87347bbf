#include "tasks/freqtrade_json.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/error.h"
#include "tasks/calendar.h"
#include "tasks/text.h"

namespace metatape::tasks {

namespace {

// A char iterator that counts the newlines it steps over, so SAX events know their line.
struct CountingIterator {
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;
  const char* p = nullptr;
  std::int64_t* newlines = nullptr;
  reference operator*() const { return *p; }
  CountingIterator& operator++() {
    if (*p == '\n') ++*newlines;
    ++p;
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const CountingIterator& o) const { return p == o.p; }
  bool operator!=(const CountingIterator& o) const { return p != o.p; }
};

constexpr const char* kExpected = "expected freqtrade JSON [[ts_ms, open, high, low, close, volume], ...]";

class CandleSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  CandleSax(std::string_view text, Context& ctx, LoadReport& report, std::vector<Row>& rows, std::int64_t cap,
            const std::int64_t& newlines)
      : text_(text), ctx_(ctx), report_(report), rows_(rows), cap_(cap), newlines_(newlines) {}

  bool null() override { return field(Field::missing, 0, "null"); }
  bool boolean(bool v) override { return field(Field::text, 0, v ? "true" : "false"); }
  bool number_integer(number_integer_t v) override { return field(Field::number, static_cast<double>(v), {}); }
  bool number_unsigned(number_unsigned_t v) override { return field(Field::number, static_cast<double>(v), {}); }
  bool number_float(number_float_t v, const string_t& s) override {
    return field(std::isfinite(v) ? Field::number : Field::text, v, s);
  }
  bool string(string_t& s) override {
    if (depth_ == 1) element_not_array("a string");
    return field(Field::text, 0, s);
  }
  bool binary(binary_t&) override { return field(Field::text, 0, "<binary>"); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) fail_at(line(), "the file is a JSON object, not an array of candles");
    if (depth_ == 1) element_not_array("an object");
    if (depth_ == 2) field(Field::text, 0, "{...}");
    ++depth_;
    return true;
  }
  bool key(string_t&) override { return true; }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 1) {
      ++candle_;
      if (cap_ > 0 && report_.rows_read >= cap_) {
        stopped_ = true;
        return false;  // enough rows: stop reading
      }
      candle_line_ = line();
      n_ = 0;
    } else if (depth_ == 2) {
      field(Field::text, 0, "[...]");
    }
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    if (depth_ == 1) finish_candle();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    const std::size_t end = std::min(position > 0 ? position - 1 : 0, text_.size());
    const std::int64_t at = 1 + std::count(text_.begin(), text_.begin() + static_cast<std::ptrdiff_t>(end), '\n');
    std::string what = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> the reason.
    const std::size_t colon = what.find(": ", what.find("parse error"));
    if (colon != std::string::npos) what = what.substr(colon + 2);
    std::string hint;
    // The literal being read when the error struck starts at or just before `position`.
    const std::size_t from = end >= 2 ? end - 2 : 0;
    const std::string near = text::lower(text_.substr(from, 12)) + text::lower(last_token);
    if (near.find("nan") != std::string::npos || near.find("inf") != std::string::npos)
      hint = "; NaN and Infinity are not JSON: write null for a missing value";
    std::string inside;
    if (depth_ >= 2) inside = "candle " + std::to_string(candle_) + ": ";
    fail_at(at, inside + "not valid JSON: " + what + hint);
  }
  bool stopped() const { return stopped_; }
  int depth() const { return depth_; }

 private:
  enum class Field { number, missing, text };

  std::int64_t line() const { return newlines_ + 1; }

  [[noreturn]] void fail_at(std::int64_t at, const std::string& what) const {
    fail("load: " + report_.path + ": line " + std::to_string(at) + ": malformed_line: " + what + " (" + kExpected +
         ")");
  }
  [[noreturn]] void element_not_array(const char* what) const {
    fail_at(line(), "element " + std::to_string(candle_ + 1) + " is " + what + ", not a candle array");
  }

  bool field(Field kind, double value, std::string_view raw) {
    if (depth_ == 0) fail_at(line(), "the file is a single JSON value, not an array of candles");
    if (depth_ == 1)
      element_not_array(kind == Field::missing ? "null" : kind == Field::number ? "a number" : "a plain value");
    if (depth_ > 2) return true;  // inside a nested field, already recorded as malformed
    if (n_ < 6) {
      kind_[n_] = kind;
      value_[n_] = value;
      if (kind != Field::number)
        raw_[n_].assign(raw.substr(0, 60));
      else if (!raw.empty())
        raw_[n_].clear();
    }
    ++n_;
    return true;
  }

  void finish_candle() {
    report_.rows_read++;
    const std::string where = "candle " + std::to_string(candle_) + ": ";
    if (n_ < 6) {
      ctx_.defect(Defect::missing_field, candle_line_, where + std::to_string(n_) + " fields, need 6", "dropped");
      report_.rows_dropped++;
      return;
    }
    NumParse p{ctx_, candle_line_, where};
    static const char* names[6] = {"time", "open", "high", "low", "close", "volume"};
    double vals[6];
    for (int k = 0; k < 6 && p.ok; ++k) {
      if (kind_[k] == Field::number)
        vals[k] = value_[k];
      else if (kind_[k] == Field::missing)
        vals[k] = p.get("", names[k]);
      else
        vals[k] = p.get(text::trim_value(raw_[k]), names[k]);
    }
    if (!p.ok) {
      report_.rows_dropped++;
      return;
    }
    Row r;
    int unit = 0;
    r.t = calendar::unix_to_ms(vals[0], unit);
    r.o = vals[1], r.h = vals[2], r.l = vals[3], r.c = vals[4], r.v = vals[5];
    r.line = candle_line_;
    r.candle = candle_;
    if (r.t < calendar::min_plausible_ms || r.t > calendar::max_plausible_ms) {
      ctx_.defect(Defect::wrong_units, candle_line_,
                  where + "time " + std::to_string(r.t) + " ms is outside 2009..2100", "dropped");
      report_.rows_dropped++;
      return;
    }
    if (!validate_row(r, ctx_, report_)) {
      report_.rows_dropped++;
      return;
    }
    rows_.push_back(r);
  }

  std::string_view text_;
  Context& ctx_;
  LoadReport& report_;
  std::vector<Row>& rows_;
  std::int64_t cap_;
  const std::int64_t& newlines_;
  int depth_ = 0;
  std::int64_t candle_ = 0, candle_line_ = 0;
  int n_ = 0;
  std::array<Field, 6> kind_{};
  std::array<double, 6> value_{};
  std::array<std::string, 6> raw_;
  bool stopped_ = false;
};

}  // namespace

void parse_json(std::string_view text, Context& ctx, LoadReport& report, const LoadOptions& options,
                std::vector<Row>& rows) {
  report.format = "freqtrade_json";
  std::int64_t newlines = 0;
  CandleSax sax(text, ctx, report, rows, row_cap(options), newlines);
  const CountingIterator first{text.data(), &newlines}, last{text.data() + text.size(), &newlines};
  // strict = true: trailing text after the array is an error too.
  nlohmann::json::sax_parse(first, last, &sax, nlohmann::json::input_format_t::json, true);
  report.lines = 1 + static_cast<std::int64_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace metatape::tasks
