#include "tasks/file_naming.h"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tasks/text.h"

namespace metatape::tasks {

using text::all_digits;
using text::lower;

namespace {

std::string strip_ext(std::string name) {
  for (const char* ext : {".gz", ".json", ".csv", ".txt", ".feather"}) {
    const std::size_t n = std::strlen(ext);
    if (name.size() > n && lower(name.substr(name.size() - n)) == ext) name.resize(name.size() - n);
  }
  return name;
}

}  // namespace

std::int64_t interval_to_ms(const std::string& interval) {
  const std::string s = lower(interval);
  if (s == "d" || s == "day" || s == "daily") return 86'400'000;
  if (s == "hour" || s == "hourly" || s == "1hr" || s == "h") return 3'600'000;
  if (s == "minute" || s == "min") return 60'000;
  std::size_t k = 0;
  while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
  if (k == 0 || k == s.size()) return 0;
  const std::int64_t n = std::atoll(s.substr(0, k).c_str());
  const std::string u = s.substr(k);
  if (u == "s") return n * 1000;
  if (u == "m" || u == "min") return n * 60'000;
  if (u == "h" || u == "hr") return n * 3'600'000;
  if (u == "d") return n * 86'400'000;
  if (u == "w") return n * 7 * 86'400'000;
  return 0;
}

std::string ms_to_interval(std::int64_t ms) {
  if (ms <= 0) return "";
  if (ms % (7 * 86'400'000LL) == 0) return std::to_string(ms / (7 * 86'400'000LL)) + "w";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  return std::to_string(ms / 1000) + "s";
}

NameInfo infer_name(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  name = strip_ext(name);
  std::vector<std::string> tokens;
  std::string cur;
  for (char ch : name) {
    if (ch == '_' || ch == '-' || ch == ' ' || ch == '.') {
      if (!cur.empty()) tokens.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) tokens.push_back(cur);
  static const char* exchanges[] = {"binance", "bybit",    "kucoin",   "gemini",  "bitstamp", "coinbase",
                                    "kraken",  "bitfinex", "poloniex", "bittrex", "okx",      "simx"};
  static const char* quotes[] = {"USDT", "USDC", "BUSD", "USD", "BTC", "ETH", "EUR", "BNB"};
  NameInfo info;
  std::vector<std::string> upper;
  bool futures = false;
  for (const std::string& t : tokens) {
    const std::string l = lower(t);
    if (info.interval.empty() && interval_to_ms(l) > 0 && l != "h" && l != "d" && l != "min") {
      info.interval = ms_to_interval(interval_to_ms(l));
      continue;
    }
    if (info.interval.empty() && l == "d" && &t == &tokens.back()) {
      info.interval = "1d";
      continue;
    }
    bool is_exchange = false;
    for (const char* e : exchanges)
      if (l == e || (l.rfind(e, 0) == 0 && l.size() > std::strlen(e) &&
                     std::isdigit(static_cast<unsigned char>(l[std::strlen(e)])))) {
        if (info.exchange.empty()) info.exchange = l;
        is_exchange = true;
      }
    if (is_exchange) continue;
    if (l == "futures") futures = true;
    bool all_upper = !t.empty() && !all_digits(t);
    for (char ch : t)
      if (!(std::isupper(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch))))
        all_upper = false;
    if (all_upper) upper.push_back(t);
  }
  if (upper.size() >= 2) {
    info.symbol = upper[0] + "/" + upper[1];
  } else if (upper.size() == 1) {
    const std::string& s = upper[0];
    info.symbol = s;
    for (const char* q : quotes) {
      const std::size_t n = std::strlen(q);
      if (s.size() > n && s.substr(s.size() - n) == q) {
        info.symbol = s.substr(0, s.size() - n) + "/" + q;
        break;
      }
    }
  } else {
    info.symbol = name;
  }
  if (info.exchange.empty()) info.exchange = "unknown";
  if (futures) info.exchange += "-futures";
  return info;
}

}  // namespace metatape::tasks
