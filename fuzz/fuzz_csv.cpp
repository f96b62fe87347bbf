// libFuzzer: the market-data loader on in-memory text. The first byte picks the validation policy
// and gap filling; the rest is the file. metatape::Error is the only acceptable failure.
#include <cstdint>
#include <string>

#include "kernels/error.h"
#include "tasks/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  metatape::tasks::LoadOptions options;
  options.policy = static_cast<metatape::tasks::ValidationPolicy>(data[0] % 3);
  options.forward_fill_gaps = (data[0] & 4) != 0;
  options.max_rows = 2000;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto result = metatape::tasks::parse_series(text, "Binance_BTCUSDT_1h.csv", options);
    (void)result.report.summary();
  } catch (const metatape::Error&) {}
  return 0;
}
