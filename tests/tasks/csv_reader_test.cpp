#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/error.h"
#include "tasks/csv_reader.h"
#include "tasks/loaders.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {

std::vector<std::vector<std::string>> records(const std::string& text) {
  const CsvTable t(text, "t.csv");
  std::vector<std::vector<std::string>> out;
  for (std::size_t k = 0; k < t.size(); ++k) {
    std::vector<std::string> r;
    for (std::size_t i = 0; i < t.field_count(k); ++i) r.emplace_back(t.field(k, i));
    out.push_back(r);
  }
  return out;
}

using R = std::vector<std::vector<std::string>>;

std::string refusal(const std::string& text) {
  try {
    CsvTable t(text, "bad.csv");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("csv reader: plain, quoted, embedded separators, doubled quotes, blanks") {
  CHECK(records("a,b,c\n1,2,3\n") == R{{"a", "b", "c"}, {"1", "2", "3"}});
  CHECK(records("a,b") == R{{"a", "b"}});  // no final line end
  CHECK(records(" a , b\t,c ") == R{{"a", "b", "c"}});
  CHECK(records("\"a,b\",c") == R{{"a,b", "c"}});
  CHECK(records("\"say \"\"hi\"\"\",x") == R{{"say \"hi\"", "x"}});
  CHECK(records("\"\",\"\"\"\"") == R{{"", "\""}});
  CHECK(records("a,,c,") == R{{"a", "", "c", ""}});
  CHECK(records("  \"q\"  ,z") == R{{"q", "z"}});  // blanks around a quoted field are not data
  CHECK(records("a\"b,c") == R{{"a\"b", "c"}});    // a quote inside an unquoted field is data
  CHECK(records("\n\n").size() == 2);              // empty lines are records with one empty field
}

TEST_CASE("csv reader: CRLF, CR, a line end inside quotes, the record's starting line") {
  CHECK(records("a,b\r\n1,2\r\n") == R{{"a", "b"}, {"1", "2"}});
  CHECK(records("a,b\r1,2\r") == R{{"a", "b"}, {"1", "2"}});
  const CsvTable t("h1,h2\r\n\"two\r\nlines\",x\r\nlast,y\r\n", "t.csv");
  REQUIRE(t.size() == 3);
  CHECK(t.field(1, 0) == "two\r\nlines");
  CHECK(t.line(0) == 1);
  CHECK(t.line(1) == 2);
  CHECK(t.line(2) == 4);  // the quoted line end counts
  CHECK(t.lines() == 4);
  CHECK(t.raw(2) == "last,y");
}

TEST_CASE("csv reader: a UTF-8 byte-order mark is skipped") {
  CHECK(records("\xEF\xBB\xBFunix,open\n1,2\n") == R{{"unix", "open"}, {"1", "2"}});
  CHECK(records("\xEF\xBB\xBF\"unix\",open\n") == R{{"unix", "open"}});
}

TEST_CASE("csv reader: an unterminated quote is refused naming the line it opened on") {
  const std::string e = refusal("a,b\n1,2\n3,\"open\n4,5\n6,7\n");
  CHECK(e.find("bad.csv: line 3: malformed_line: unterminated quoted field") != std::string::npos);
  CHECK(e.find("close it") != std::string::npos);
  const std::string after = refusal("a,b\n\"x\"y,2\n");
  CHECK(after.find("bad.csv: line 2: malformed_line: 'y' after the closing quote") != std::string::npos);
}

TEST_CASE("csv candles: a quoted header and quoted cells, CRLF and a BOM load as plain ones") {
  const std::string plain =
      "timestamp,open,high,low,close,volume\n"
      "1609459200000,100,101,99,100.5,10\n"
      "1609462800000,100.5,102,100,101,12\n"
      "1609466400000,101,103,100.5,102,11\n";
  const std::string quoted =
      "\xEF\xBB\xBF\"timestamp\",\"open\",\"high\",\"low\",\"close\",\"volume\"\r\n"
      "\"1609459200000\",\"100\",\"101\",\"99\",\"100.5\",\"10\"\r\n"
      "1609462800000,\"100.5\",102,100,101,12\r\n"
      "\"1609466400000\",101,103,100.5,102,\"11\"\r\n";
  const LoadResult a = parse_series(plain, "Binance_BTCUSDT_1h.csv");
  const LoadResult b = parse_series(quoted, "Binance_BTCUSDT_1h.csv");
  CHECK(b.report.format == "header_csv");
  REQUIRE(b.series.size() == 3);
  CHECK(b.series.time_ms == a.series.time_ms);
  CHECK(b.series.close == a.series.close);
  CHECK(b.series.volume == a.series.volume);
  CHECK(b.report.lines == 4);
}

TEST_CASE("csv candles: a quoted text column with embedded commas does not shift the numbers") {
  // A symbol or note column holding a comma: split naively, every number after it moves one column.
  const std::string text =
      "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n"
      "1609459200,2021-01-01 00:00:00,\"BTC/USD, spot\",100,101,99,100.5,10,1005\n"
      "1609462800,2021-01-01 01:00:00,\"BTC/USD, \"\"spot\"\"\",100.5,102,100,101,12,1212\n";
  const LoadResult r = parse_series(text, "Bitstamp_BTCUSD_1h.csv");
  REQUIRE(r.series.size() == 2);
  CHECK(r.series.open[0] == 100.0);
  CHECK(r.series.close[1] == 101.0);
  CHECK(r.series.volume[1] == 12.0);
  CHECK(r.report.rows_dropped == 0);
}

TEST_CASE("csv candles: an unterminated quote refuses the file under every policy, naming the line") {
  const std::string text =
      "timestamp,open,high,low,close,volume\n"
      "1609459200000,100,101,99,100.5,10\n"
      "1609462800000,\"100.5,102,100,101,12\n"
      "1609466400000,101,103,100.5,102,11\n";
  for (ValidationPolicy p : {ValidationPolicy::fail, ValidationPolicy::drop, ValidationPolicy::repair}) {
    LoadOptions o;
    o.policy = p;
    CHECK_THROWS_WITH_AS(parse_series(text, "q.csv", o),
                         doctest::Contains("q.csv: line 3: malformed_line: unterminated quoted field"), Error);
  }
}
