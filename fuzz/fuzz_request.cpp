// libFuzzer: the server's request parser. The first byte picks the limits (features 1..4,
// classification or not); the rest is the body, parsed as an adapt and as a predict request. Any
// outcome but success or RequestError(400) is a finding.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "serve/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  metatape::serve::RequestLimits limits;
  limits.in_features = 1 + (data[0] & 3);
  limits.classification = (data[0] & 4) != 0;
  limits.y_columns = limits.classification ? 1 : 1 + ((data[0] >> 3) & 1);
  limits.max_support_rows = 64;
  limits.max_query_rows = 64;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  for (int kind = 0; kind < 2; ++kind) {
    try {
      if (kind == 0) {
        const auto r = metatape::serve::parse_adapt_request(body, limits);
        if (r.x.size() != static_cast<std::size_t>(r.rows * limits.in_features)) std::abort();
        if (r.y.size() != static_cast<std::size_t>(r.rows * limits.y_columns)) std::abort();
      } else {
        const auto r = metatape::serve::parse_predict_request(body, limits);
        if (r.x.size() != static_cast<std::size_t>(r.rows * limits.in_features)) std::abort();
      }
    } catch (const metatape::serve::RequestError& e) {
      if (e.status() != 400) std::abort();
    }
  }
  return 0;
}
