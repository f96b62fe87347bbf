#include <doctest/doctest.h>

#include <string>

#include "kernels/error.h"
#include "tasks/loaders.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {

std::string refusal(const std::string& text, ValidationPolicy policy = ValidationPolicy::fail) {
  LoadOptions o;
  o.policy = policy;
  try {
    parse_series(text, "ETH_USDT-1h.json", o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string c1 = "[1609459200000,100,101,99,100.5,10]";
const std::string c2 = "[1609462800000,100.5,102,100,101,12]";
const std::string c3 = "[1609466400000,101,103,100.5,102,11]";

}  // namespace

TEST_CASE("freqtrade json: candles on one line or many, numbers as strings, a row cap") {
  const LoadResult one = parse_series("[" + c1 + "," + c2 + "," + c3 + "]", "ETH_USDT-1h.json");
  CHECK(one.report.format == "freqtrade_json");
  CHECK(one.series.size() == 3);
  CHECK(one.series.symbol == "ETH/USDT");
  CHECK(one.series.interval == "1h");
  const LoadResult many = parse_series("[\n " + c1 + ",\n " + c2 + ",\n " + c3 + "\n]\n", "ETH_USDT-1h.json");
  CHECK(many.series.close == one.series.close);
  CHECK(many.report.lines == 6);
  const LoadResult strings =
      parse_series("[[\"1609459200000\",\"100\",101,99,100.5,10]," + c2 + "," + c3 + "]", "ETH_USDT-1h.json");
  CHECK(strings.series.open[0] == 100.0);
  LoadOptions capped;
  capped.max_rows = 2;
  // The cap stops reading: what follows the second candle is never parsed.
  const LoadResult r = parse_series("[" + c1 + "," + c2 + "," + c3 + ", garbage", "ETH_USDT-1h.json", capped);
  CHECK(r.report.rows_read == 2);
  CHECK(r.series.size() == 2);
}

TEST_CASE("freqtrade json: broken JSON is refused naming the file, the line, the candle and the fix") {
  const std::string truncated = refusal("[\n" + c1 + ",\n[1609462800000,100.5,102");
  CHECK(truncated.find("ETH_USDT-1h.json: line 3: malformed_line: candle 2: not valid JSON") != std::string::npos);
  CHECK(truncated.find("expected freqtrade JSON [[ts_ms, open, high, low, close, volume], ...]") != std::string::npos);
  const std::string nan = refusal("[" + c1 + ",\n[1609462800000,NaN,102,100,101,12]]");
  CHECK(nan.find("line 2: malformed_line: candle 2: not valid JSON") != std::string::npos);
  CHECK(nan.find("write null for a missing value") != std::string::npos);
  CHECK(refusal("{\"candles\": []}").find("line 1: malformed_line: the file is a JSON object") != std::string::npos);
  CHECK(refusal("[" + c1 + ", 5]").find("element 2 is a number, not a candle array") != std::string::npos);
  CHECK(refusal("[" + c1 + "," + c2 + "] trailing").find("not valid JSON") != std::string::npos);
  // The policy cannot rescue a file that is not JSON.
  CHECK(refusal("[" + c1 + "," + c2 + ",[1,2", ValidationPolicy::repair).find("not valid JSON") != std::string::npos);
}

TEST_CASE("freqtrade json: defective candles are row defects that name the candle, handled by the policy") {
  const std::string text = "[" + c1 +
                           ",\n[1609462800000,null,102,100,101,12],\n[1609466400000,101,[1],100.5,102,11],\n" +
                           "[1609470000000,101,103],\n[1609473600000,102,104,101,\"x\",9],\n" +
                           "[1609477200000,103,105,102,104,8],\n[1609480800000,104,106,103,105,8],\n" +
                           "[1609484400000,105,107,104,106,8],\n[1609488000000,106,108,105,107,8]]";
  CHECK(refusal(text).find("line 2: missing_field: candle 2: open is empty") != std::string::npos);
  LoadOptions drop;
  drop.policy = ValidationPolicy::drop;
  const LoadResult r = parse_series(text, "ETH_USDT-1h.json", drop);
  CHECK(r.report.rows_read == 9);
  CHECK(r.report.rows_dropped == 4);
  CHECK(r.series.size() == 5);
  CHECK(r.report.count(Defect::missing_field) == 2);
  CHECK(r.report.count(Defect::malformed_line) == 2);
  bool named = false;
  for (const LoadIssue& i : r.report.issues) named = named || (i.line == 4 && i.detail == "candle 4: 3 fields, need 6");
  CHECK(named);
}
