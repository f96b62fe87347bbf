// Metadata from a market file's name (public through tasks/loaders.h).
// Contract: infer_name reads (symbol, exchange, interval) from the last path component with its
// extensions (.gz .json .csv .txt .feather) removed, split on '_', '-', ' ' and '.': a known exchange
// name (binance, bybit, kucoin, gemini, bitstamp, coinbase, kraken, bitfinex, poloniex, bittrex, okx,
// simx; also "binance2"-like variants) is the exchange, else "unknown" ("-futures" is appended when a
// token says futures); an interval token ("1h", "5m", "d" last) is the interval; upper-case tokens form
// the symbol ("ETH", "USDT" -> "ETH/USDT"; "BTCUSDT" -> "BTC/USDT" by a known quote suffix); with none,
// the symbol is the bare name. interval_to_ms parses "1m", "5m", "15m", "1h", "8h", "1d", "d", "1w",
// "hourly", "daily"... to milliseconds (0 when not recognised); ms_to_interval is its inverse.
#pragma once

#include <cstdint>
#include <string>

namespace metatape::tasks {

struct NameInfo {
  std::string symbol, exchange, interval;
};
NameInfo infer_name(const std::string& path);

std::int64_t interval_to_ms(const std::string& interval);
std::string ms_to_interval(std::int64_t ms);

}  // namespace metatape::tasks
