// `metatape serve`: an HTTP adaptation server over one loaded model (cpp-httplib, Debian's
// libcpp-httplib-dev). Routes and bodies: serve/protocol.h. GET /healthz answers {"status": "ok",
// ...} without a token; GET /metrics is Prometheus text:
//   metatape_requests_total{route, code}            counter
//   metatape_request_seconds{route} histogram       latency of handled requests
//   metatape_adapted_models, metatape_adapted_bytes gauges (the LRU's content)
//   metatape_adapted_evictions_total, metatape_adapted_expirations_total counters
// Requests run on a pool of `threads` workers (httplib's task queue). When a token is set, /v1/* and
// /metrics need "Authorization: Bearer <token>" (401 otherwise). The server binds 127.0.0.1 unless
// told otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "capi/inference_model.h"
#include "serve/adapted_cache.h"
#include "serve/protocol.h"

namespace httplib {
class Server;
}

namespace metatape::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see bind())
  int threads = 4;
  std::size_t max_body_bytes = 4 << 20;
  std::int64_t max_support_rows = 10000;
  std::int64_t max_query_rows = 10000;
  int max_steps = 100;
  CacheOptions cache;
  std::string token;  // empty: no authentication
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

class Server {
 public:
  Server(std::shared_ptr<const capi::InferenceModel> model, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // One request, in process: what the HTTP routes call. `authorization` is the header's value.
  Response handle(const std::string& method, const std::string& path,
                  const std::string& authorization, const std::string& body);

  // Binds host:port (port 0: any free one) and returns the port; throws Error when it cannot.
  int bind();
  // Serves until stop(); bind() first.
  void run();
  // bind() + run() on a background thread; returns the port.
  int start();
  void stop();

  std::string metrics_text() const;
  AdaptedCache& cache() { return cache_; }
  const RequestLimits& limits() const { return limits_; }

 private:
  struct Metrics;
  Response route(const std::string& method, const std::string& path, const std::string& authorization,
                 const std::string& body);
  Response adapt(const std::string& body);
  Response predict(const std::string& body);

  std::shared_ptr<const capi::InferenceModel> model_;
  ServerOptions options_;
  RequestLimits limits_;
  AdaptedCache cache_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = -1;
};

}  // namespace metatape::serve
