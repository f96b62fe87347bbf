// `metatape serve`: an HTTP adaptation server over one loaded model (cpp-httplib, Debian's
// libcpp-httplib-dev). Routes and bodies: serve/protocol.h. GET /healthz answers {"status": "ok",
// ...} without a token; GET /metrics is Prometheus text:
//   metatape_requests_total{route, code}            counter
//   metatape_request_seconds{route} histogram       latency of handled requests
//   metatape_adapted_models, metatape_adapted_bytes gauges (the LRU's content)
//   metatape_adapted_evictions_total, metatape_adapted_expirations_total counters
//   metatape_connections_open gauge, metatape_connections_total counter
//   metatape_connections_refused_total{reason} counter   busy, queue_full, head_timeout,
//                                                        body_timeout, write_timeout, too_large
// Connections are held by one I/O thread; complete requests run on a pool of `threads` workers
// (serve/http_loop.h: deadlines, queue, connection and size limits). cpp-httplib parses requests
// and writes replies. When a token is set, /v1/* and /metrics need "Authorization: Bearer <token>"
// (401 otherwise). The server binds 127.0.0.1 unless told otherwise.
//
// Replies are always valid JSON: a non-finite prediction or adapted parameter is 422 with a message
// saying so, never a number JSON cannot hold.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "capi/inference_model.h"
#include "serve/adapted_cache.h"
#include "serve/http_loop.h"
#include "serve/protocol.h"

namespace metatape::serve {

struct ServerOptions {
  // Upper bounds of the options below (checked by Server's constructor).
  static constexpr int kMaxThreads = 256;
  static constexpr int kMaxConnections = 1000;  // descriptors stay below FD_SETSIZE for httplib
  static constexpr int kMaxQueueLength = 100000;
  static constexpr int kMaxBacklog = 65535;

  std::string host = "127.0.0.1";
  int port = 8080;                                 // 0: any free port (see bind())
  int threads = 4;                                 // workers running requests, [1, kMaxThreads]
  int max_connections = 512;                       // open connections held at once; more are answered 503
  int queue_length = 256;                          // complete requests waiting for a worker; more are answered 503
  int backlog = 1024;                              // listen(2) backlog (the kernel caps it at net.core.somaxconn)
  int keep_alive_max = 100;                        // requests per connection
  std::chrono::milliseconds head_timeout{5000};    // request line + headers, else 408
  std::chrono::milliseconds body_timeout{30000};   // the body after its head, else 408
  std::chrono::milliseconds idle_timeout{5000};    // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{10000};  // the client taking a reply
  std::size_t max_head_bytes = 32 << 10;           // else 431
  std::size_t max_body_bytes = 4 << 20;            // else 413
  std::size_t max_buffered_bytes = std::size_t(256) << 20;  // bodies in memory in all (at least 4 bodies), else 503
  std::int64_t max_support_rows = 10000;
  std::int64_t max_query_rows = 10000;
  int max_steps = 100;
  CacheOptions cache;
  std::string token;  // empty: no authentication
  // Starts the server's threads; tests replace it to simulate a failure. Empty: std::thread.
  std::function<std::thread(std::function<void()>)> spawn_thread;
};

// A ServerOptions value outside its documented range (the message names the option as its CLI flag,
// the value and the limit).
class OptionError : public Error {
 public:
  using Error::Error;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

class Server {
 public:
  // Throws OptionError for an option outside its range.
  Server(std::shared_ptr<const capi::InferenceModel> model, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // One request, in process: what the HTTP routes call. `authorization` is the header's value.
  Response handle(const std::string& method, const std::string& path, const std::string& authorization,
                  const std::string& body);

  // Binds host:port (port 0: any free one), starts the workers and returns the port; throws Error
  // naming the address, or the worker thread that could not be started.
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
  class Router;
  Response route(const std::string& method, const std::string& path, const std::string& authorization,
                 const std::string& body);
  Response adapt(const std::string& body);
  Response predict(const std::string& body);
  // Throws RequestError(400) naming the classes without a support row, for learners that need all.
  void check_every_class(const std::vector<float>& labels) const;

  std::shared_ptr<const capi::InferenceModel> model_;
  ServerOptions options_;
  RequestLimits limits_;
  AdaptedCache cache_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Router> http_;    // httplib: parsing, routing, writing replies
  std::unique_ptr<HttpLoop> loop_;  // sockets and workers; uses http_
  std::thread thread_;
  int port_ = -1;
};

}  // namespace metatape::serve
