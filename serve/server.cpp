#include "serve/server.h"

#include <httplib.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/error.h"

namespace metatape::serve {
namespace {

constexpr std::array<double, 14> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,    0.1,    0.25,  0.5,   1.0,   2.5};
const std::array<const char*, 5> kRoutes = {"adapt", "predict", "healthz", "metrics", "other"};

std::size_t route_index(const std::string& path) {
  if (path == "/v1/adapt") return 0;
  if (path == "/v1/predict") return 1;
  if (path == "/healthz") return 2;
  if (path == "/metrics") return 3;
  return 4;
}

Response json_error(int status, const std::string& message) {
  return Response{status, error_body(message), "application/json"};
}

// Constant-time comparison of the presented and expected tokens.
bool same_token(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0;
}

}  // namespace

struct Server::Metrics {
  struct Route {
    std::map<int, std::int64_t> codes;
    std::array<std::int64_t, kBuckets.size()> buckets{};
    std::int64_t count = 0;
    double sum = 0.0;
  };
  mutable std::mutex mutex;
  std::array<Route, kRoutes.size()> routes;

  void record(std::size_t route, int code, double seconds) {
    std::lock_guard<std::mutex> lock(mutex);
    Route& r = routes[route];
    ++r.codes[code];
    ++r.count;
    r.sum += seconds;
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      if (seconds <= kBuckets[b]) ++r.buckets[b];
    }
  }
};

Server::Server(std::shared_ptr<const capi::InferenceModel> model, ServerOptions options)
    : model_(std::move(model)), options_(std::move(options)), cache_(options_.cache),
      metrics_(std::make_unique<Metrics>()) {
  if (!model_) fail("serve: no model given");
  if (options_.threads < 1) fail("serve: --threads must be >= 1, got " + std::to_string(options_.threads));
  if (options_.max_steps < 0 || options_.max_steps > capi::InferenceModel::kMaxSteps) {
    fail("serve: --max-steps must be in [0, " + std::to_string(capi::InferenceModel::kMaxSteps) + "]");
  }
  limits_.in_features = model_->in_features();
  limits_.classification = model_->task_kind() == tasks::TaskKind::classification;
  limits_.y_columns = limits_.classification ? 1 : model_->out_features();
  limits_.max_support_rows = options_.max_support_rows;
  limits_.max_query_rows = options_.max_query_rows;
  limits_.max_steps = options_.max_steps;
}

Server::~Server() { stop(); }

Response Server::handle(const std::string& method, const std::string& path,
                        const std::string& authorization, const std::string& body) {
  const auto start = std::chrono::steady_clock::now();
  Response response;
  try {
    response = route(method, path, authorization, body);
  } catch (const RequestError& e) {
    response = json_error(e.status(), e.what());
  } catch (const capi::InputError& e) {
    response = json_error(400, e.what());
  } catch (const std::exception& e) {
    response = json_error(500, std::string("metatape: serve: internal error: ") + e.what());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_->record(route_index(path), response.status, seconds);
  return response;
}

Response Server::route(const std::string& method, const std::string& path,
                       const std::string& authorization, const std::string& body) {
  const std::size_t r = route_index(path);
  if (r == 4) return json_error(404, "metatape: serve: no route " + path + " (routes: POST /v1/adapt, POST /v1/predict, GET /healthz, GET /metrics)");
  const char* want = r <= 1 ? "POST" : "GET";
  if (method != want) return json_error(405, "metatape: serve: " + path + " takes " + want + ", not " + method);
  if (r == 2) {
    return Response{200, nlohmann::json{{"status", "ok"}, {"learner", model_->learner_name()},
                                        {"model", model_->model_description()},
                                        {"in_features", model_->in_features()}}.dump(), "application/json"};
  }
  if (!options_.token.empty()) {
    const std::string prefix = "Bearer ";
    if (authorization.rfind(prefix, 0) != 0) {
      return json_error(401, "metatape: serve: missing bearer token (send \"Authorization: Bearer <token>\")");
    }
    if (!same_token(authorization.substr(prefix.size()), options_.token)) {
      return json_error(401, "metatape: serve: wrong bearer token");
    }
  }
  if (body.size() > options_.max_body_bytes) {
    return json_error(413, "metatape: serve: the body has " + std::to_string(body.size()) +
                               " bytes, the limit is " + std::to_string(options_.max_body_bytes));
  }
  if (r == 3) return Response{200, metrics_text(), "text/plain; version=0.0.4"};
  return r == 0 ? adapt(body) : predict(body);
}

Response Server::adapt(const std::string& body) {
  AdaptRequest request = parse_adapt_request(body, limits_);
  auto adapted = std::make_shared<capi::Adapted>(model_->adapt(
      request.x.data(), request.rows, limits_.in_features, request.y.data(), limits_.y_columns,
      request.steps, options_.max_steps));
  const std::int64_t bytes = adapted->bytes;
  const int steps = adapted->steps;
  std::string id;
  try {
    id = cache_.insert(std::move(adapted));
  } catch (const Error& e) {
    return json_error(507, e.what());
  }
  return Response{200, nlohmann::json{{"model_id", id}, {"support_rows", request.rows}, {"steps", steps},
                                      {"bytes", bytes},
                                      {"expires_in_s", std::chrono::duration<double>(options_.cache.ttl).count()}}
                           .dump(), "application/json"};
}

Response Server::predict(const std::string& body) {
  PredictRequest request = parse_predict_request(body, limits_);
  std::shared_ptr<const capi::Adapted> adapted = cache_.find(request.model_id);
  if (!adapted) {
    return json_error(404, "metatape: serve: no adapted model '" + request.model_id +
                               "' (unknown, evicted or expired after " +
                               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(options_.cache.ttl).count()) +
                               " s unused; adapt again)");
  }
  std::int64_t columns = 0;
  const std::vector<float> values =
      model_->predict(*adapted, request.x.data(), request.rows, limits_.in_features, columns);
  std::string out = "{\"model_id\":\"" + request.model_id + "\",\"rows\":" + std::to_string(request.rows) +
                    ",\"columns\":" + std::to_string(columns) + ",\"predictions\":[";
  char number[32];
  for (std::int64_t r = 0; r < request.rows; ++r) {
    out += r ? ",[" : "[";
    for (std::int64_t c = 0; c < columns; ++c) {
      std::snprintf(number, sizeof(number), c ? ",%.9g" : "%.9g", static_cast<double>(values[static_cast<std::size_t>(r * columns + c)]));
      out += number;
    }
    out += "]";
  }
  out += "]}";
  return Response{200, std::move(out), "application/json"};
}

std::string Server::metrics_text() const {
  std::ostringstream out;
  out << "# HELP metatape_requests_total Requests handled, by route and status code.\n"
      << "# TYPE metatape_requests_total counter\n";
  std::lock_guard<std::mutex> lock(metrics_->mutex);
  for (std::size_t r = 0; r < kRoutes.size(); ++r) {
    for (const auto& [code, n] : metrics_->routes[r].codes) {
      out << "metatape_requests_total{route=\"" << kRoutes[r] << "\",code=\"" << code << "\"} " << n << "\n";
    }
  }
  out << "# HELP metatape_request_seconds Time to handle a request (parse, adapt or predict, reply body).\n"
      << "# TYPE metatape_request_seconds histogram\n";
  for (std::size_t r = 0; r < kRoutes.size(); ++r) {
    const auto& route = metrics_->routes[r];
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      out << "metatape_request_seconds_bucket{route=\"" << kRoutes[r] << "\",le=\"" << kBuckets[b] << "\"} "
          << route.buckets[b] << "\n";
    }
    out << "metatape_request_seconds_bucket{route=\"" << kRoutes[r] << "\",le=\"+Inf\"} " << route.count << "\n"
        << "metatape_request_seconds_sum{route=\"" << kRoutes[r] << "\"} " << route.sum << "\n"
        << "metatape_request_seconds_count{route=\"" << kRoutes[r] << "\"} " << route.count << "\n";
  }
  const CacheStats s = cache_.stats();
  out << "# HELP metatape_adapted_models Adapted models held in the LRU.\n# TYPE metatape_adapted_models gauge\n"
      << "metatape_adapted_models " << s.entries << "\n"
      << "# HELP metatape_adapted_bytes Bytes of adapted parameters held.\n# TYPE metatape_adapted_bytes gauge\n"
      << "metatape_adapted_bytes " << s.bytes << "\n"
      << "# HELP metatape_adapted_evictions_total Models evicted for the memory or count cap.\n"
      << "# TYPE metatape_adapted_evictions_total counter\nmetatape_adapted_evictions_total " << s.evicted << "\n"
      << "# HELP metatape_adapted_expirations_total Models dropped after the time-to-live.\n"
      << "# TYPE metatape_adapted_expirations_total counter\nmetatape_adapted_expirations_total " << s.expired << "\n";
  return out.str();
}

int Server::bind() {
  if (http_) fail("serve: already bound");
  http_ = std::make_unique<httplib::Server>();
  const int threads = options_.threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  http_->set_tcp_nodelay(true);  // small JSON replies: no Nagle + delayed-ACK stalls (~40 ms)
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    const Response out = handle(req.method, req.path, req.get_header_value("Authorization"), req.body);
    res.status = out.status;
    res.set_content(out.body, out.content_type.c_str());
  };
  http_->Get(".*", handler);
  http_->Post(".*", handler);
  http_->Put(".*", handler);
  http_->Delete(".*", handler);
  http_->Patch(".*", handler);
  // httplib answers some requests itself (413 over the payload limit, 400 on a malformed request
  // line): give them a JSON body too.
  http_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 413 ? "metatape: serve: the request body is too large"
                                                  : "metatape: serve: bad request (HTTP status " + std::to_string(res.status) + ")";
    res.set_content(error_body(message), "application/json");
  });
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
  } else {
    port_ = http_->bind_to_port(options_.host, options_.port) ? options_.port : -1;
  }
  if (port_ < 0) {
    http_.reset();
    fail("serve: cannot bind " + options_.host + ":" + std::to_string(options_.port) +
         " (in use, or not an address of this machine; try --port 0)");
  }
  return port_;
}

void Server::run() {
  if (!http_) fail("serve: run() before bind()");
  http_->listen_after_bind();
}

int Server::start() {
  const int port = bind();
  thread_ = std::thread([this] { run(); });
  // The socket listens from bind() on: connections made before the accept loop starts wait in the
  // backlog.
  return port;
}

void Server::stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace metatape::serve
