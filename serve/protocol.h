// The JSON protocol of `metatape serve` (request parsing and response bodies), separate from the
// HTTP server so it can be fuzzed on its own.
//
// POST /v1/adapt    {"x": [[f, ...], ...], "y": [[f, ...], ...] | [f, ...], "steps": int?}
//   x: support rows x in_features; y: rows x outputs (regression, portfolio) or one class label per
//   row (classification; a flat array or rows x 1). steps: inner steps, default the learner's.
//   -> 200 {"model_id": "<32 hex>", "support_rows", "steps", "bytes", "expires_in_s"}
// POST /v1/predict  {"model_id": "<id>", "x": [[f, ...], ...]}
//   -> 200 {"model_id", "rows", "columns", "predictions": [[f, ...], ...]}
// Errors: {"error": "<message naming the field and the fix>"} with status 400 (malformed JSON, a
// missing or mistyped field, NaN/Inf or a value that overflows float32, shapes that do not fit the
// model, limits, a protonet/matching support set without a row of some class), 401 (token), 404
// (unknown or expired model_id, unknown path), 405 (method), 413 (body too large), 422 (the model's
// output or adapted parameters are not finite), 507 (the adapted model alone exceeds the cache), 500
// (anything else); the connection layer's 408, 411, 431 and 503 are in serve/http_loop.h. Every
// reply body is valid JSON (docs/serve.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/error.h"

namespace metatape::serve {

// What a request is checked against: the model's shape and the server's limits.
struct RequestLimits {
  std::int64_t in_features = 1;
  std::int64_t y_columns = 1;  // outputs; 1 for classification (labels)
  bool classification = false;
  std::int64_t max_support_rows = 10000;
  std::int64_t max_query_rows = 10000;
  int max_steps = 100;
  int max_depth = 8;  // JSON nesting accepted (checked before parsing)
};

class RequestError : public Error {
 public:
  RequestError(int status, const std::string& message) : Error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct AdaptRequest {
  std::vector<float> x, y;  // row-major
  std::int64_t rows = 0;
  int steps = -1;  // -1: the learner's default
};

struct PredictRequest {
  std::string model_id;
  std::vector<float> x;
  std::int64_t rows = 0;
};

// Throw RequestError(400, message) naming the field ("x[3][1]", "steps", ...).
AdaptRequest parse_adapt_request(std::string_view body, const RequestLimits& limits);
PredictRequest parse_predict_request(std::string_view body, const RequestLimits& limits);

// {"error": message}
std::string error_body(const std::string& message);

}  // namespace metatape::serve
