#include "serve/server.h"

#include <httplib.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/error.h"
#include "meta/registry.h"

namespace metatape::serve {
namespace {

constexpr std::array<double, 14> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5};
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
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0;
}

// Checks `value` in [lo, hi] for the option spelt `flag` on the command line (or its ServerOptions
// field name where there is no flag).
void check_range(const char* flag, long long value, long long lo, long long hi, const std::string& why = "") {
  if (value < lo || value > hi) {
    throw OptionError("metatape: serve: " + std::string(flag) + " " + std::to_string(value) + " is outside [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]" + why);
  }
}

void check_positive(const char* flag, std::chrono::milliseconds value) {
  if (value.count() <= 0) {
    throw OptionError("metatape: serve: " + std::string(flag) + " must be positive, got " +
                      std::to_string(static_cast<double>(value.count()) / 1000.0) + " s");
  }
}

// The first non-finite value of a rows x columns array as "name[r][c] = nan", or "" when all are finite.
std::string first_non_finite(const std::vector<float>& values, std::int64_t columns, const std::string& name) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      const std::int64_t r = columns > 0 ? static_cast<std::int64_t>(i) / columns : 0;
      const std::int64_t c = columns > 0 ? static_cast<std::int64_t>(i) % columns : 0;
      return name + "[" + std::to_string(r) + "][" + std::to_string(c) + "] = " +
             (std::isnan(values[i]) ? "nan"
              : values[i] > 0       ? "inf"
                                    : "-inf");
    }
  }
  return "";
}

// The adapted parameters' first non-finite value as "parameter 'name'", or "".
std::string non_finite_parameter(const nn::ParameterList& params) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& t = params[i];
    bool finite = true;
    if (t.dtype() == DType::f64) {
      for (double v : t.to_vector<double>()) finite = finite && std::isfinite(v);
    } else {
      for (float v : t.to_vector<float>()) finite = finite && std::isfinite(v);
    }
    if (!finite) return "parameter '" + params.name(i) + "'";
  }
  return "";
}

constexpr const char* kNonFiniteAdvice =
    "; the inputs are too large for float32 arithmetic (values near 3e38 overflow), or the adaptation "
    "diverged: scale the features and targets to a moderate range (e.g. standardise them) or ask for "
    "fewer steps, then adapt again";

// Appends a finite float as the shortest JSON number that reads back as the same float32.
void append_number(std::string& out, float v) {
  char text[32];
  const auto [end, ec] = std::to_chars(text, text + sizeof(text), v);
  if (ec != std::errc() || !std::isfinite(v))
    fail("serve: internal error: a non-finite number reached the JSON writer");
  out.append(text, end);
}

}  // namespace

// httplib's request processing (parsing, routing, the reply), driven by HttpLoop's workers.
class Server::Router : public httplib::Server {
 public:
  bool process(httplib::Stream& stream, bool close_connection, bool& connection_closed) {
    return process_request(stream, close_connection, connection_closed, nullptr);
  }
};

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
    : model_(std::move(model)),
      options_(std::move(options)),
      cache_(options_.cache),
      metrics_(std::make_unique<Metrics>()) {
  if (!model_) fail("serve: no model given");
  const ServerOptions& o = options_;
  check_range("--threads", o.threads, 1, ServerOptions::kMaxThreads,
              " (worker threads; each is an OS thread with its own stack, and more workers than cores only "
              "add queueing)");
  check_range("--max-connections", o.max_connections, 1, ServerOptions::kMaxConnections);
  check_range("--queue-length", o.queue_length, 1, ServerOptions::kMaxQueueLength);
  check_range("--backlog", o.backlog, 1, ServerOptions::kMaxBacklog);
  check_range("keep_alive_max", o.keep_alive_max, 1, 1000000);
  check_range("--max-steps", o.max_steps, 0, capi::InferenceModel::kMaxSteps);
  check_positive("--head-timeout-s", o.head_timeout);
  check_positive("--body-timeout-s", o.body_timeout);
  check_positive("--idle-timeout-s", o.idle_timeout);
  check_positive("write_timeout", o.write_timeout);
  if (o.max_body_bytes < 1) throw OptionError("metatape: serve: --max-body-kb must be positive");
  if (o.max_head_bytes < 1024) throw OptionError("metatape: serve: the request head limit must be at least 1024 bytes");
  limits_.in_features = model_->in_features();
  limits_.classification = model_->task_kind() == tasks::TaskKind::classification;
  limits_.y_columns = limits_.classification ? 1 : model_->out_features();
  limits_.max_support_rows = options_.max_support_rows;
  limits_.max_query_rows = options_.max_query_rows;
  limits_.max_steps = options_.max_steps;
}

Server::~Server() { stop(); }

Response Server::handle(const std::string& method, const std::string& path, const std::string& authorization,
                        const std::string& body) {
  const auto start = std::chrono::steady_clock::now();
  Response response;
  try {
    response = route(method, path, authorization, body);
  } catch (const RequestError& e) {
    response = json_error(e.status(), e.what());
  } catch (const capi::InputError& e) {
    // The request's numbers were checked before they reached the model, so "not finite" here is about
    // what the model computed from them.
    // The model's own check (capi::NonFiniteOutputError) already says what to do.
    response = e.kind() == capi::InputError::Kind::non_finite_output ? json_error(422, e.what())
               : e.kind() == capi::InputError::Kind::non_finite
                   ? json_error(422, std::string(e.what()) + kNonFiniteAdvice)
                   : json_error(400, e.what());
  } catch (const std::exception& e) {
    response = json_error(500, std::string("metatape: serve: internal error: ") + e.what());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_->record(route_index(path), response.status, seconds);
  return response;
}

Response Server::route(const std::string& method, const std::string& path, const std::string& authorization,
                       const std::string& body) {
  const std::size_t r = route_index(path);
  if (r == 4)
    return json_error(404, "metatape: serve: no route " + path +
                               " (routes: POST /v1/adapt, POST /v1/predict, GET /healthz, GET /metrics)");
  const char* want = r <= 1 ? "POST" : "GET";
  if (method != want) return json_error(405, "metatape: serve: " + path + " takes " + want + ", not " + method);
  if (r == 2) {
    return Response{200,
                    nlohmann::json{{"status", "ok"},
                                   {"learner", model_->learner_name()},
                                   {"model", model_->model_description()},
                                   {"in_features", model_->in_features()}}
                        .dump(),
                    "application/json"};
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
    return json_error(413, "metatape: serve: the body has " + std::to_string(body.size()) + " bytes, the limit is " +
                               std::to_string(options_.max_body_bytes));
  }
  if (r == 3) return Response{200, metrics_text(), "text/plain; version=0.0.4"};
  return r == 0 ? adapt(body) : predict(body);
}

Response Server::adapt(const std::string& body) {
  AdaptRequest request = parse_adapt_request(body, limits_);
  if (limits_.classification) check_every_class(request.y);
  auto adapted = std::make_shared<capi::Adapted>(model_->adapt(request.x.data(), request.rows, limits_.in_features,
                                                               request.y.data(), limits_.y_columns, request.steps,
                                                               options_.max_steps));
  if (const std::string bad = non_finite_parameter(adapted->params); !bad.empty()) {
    return json_error(422, "metatape: serve: the adapted parameters are not finite (" + bad +
                               " holds NaN or Inf), so no model was stored" + kNonFiniteAdvice);
  }
  const std::int64_t bytes = adapted->bytes;
  const int steps = adapted->steps;
  std::string id;
  try {
    id = cache_.insert(std::move(adapted));
  } catch (const Error& e) {
    return json_error(507, e.what());
  }
  return Response{200,
                  nlohmann::json{{"model_id", id},
                                 {"support_rows", request.rows},
                                 {"steps", steps},
                                 {"bytes", bytes},
                                 {"expires_in_s", std::chrono::duration<double>(options_.cache.ttl).count()}}
                      .dump(),
                  "application/json"};
}

Response Server::predict(const std::string& body) {
  PredictRequest request = parse_predict_request(body, limits_);
  std::shared_ptr<const capi::Adapted> adapted = cache_.find(request.model_id);
  if (!adapted) {
    return json_error(
        404, "metatape: serve: no adapted model '" + request.model_id + "' (unknown, evicted or expired after " +
                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(options_.cache.ttl).count()) +
                 " s unused; adapt again)");
  }
  std::int64_t columns = 0;
  const std::vector<float> values =
      model_->predict(*adapted, request.x.data(), request.rows, limits_.in_features, columns);
  if (const std::string bad = first_non_finite(values, columns, "predictions"); !bad.empty()) {
    return json_error(422, "metatape: serve: the model's output is not finite (" + bad + ")" + kNonFiniteAdvice);
  }
  std::string out = nlohmann::json{{"model_id", request.model_id}}.dump();  // escapes the id
  out.pop_back();
  out += ",\"rows\":" + std::to_string(request.rows) + ",\"columns\":" + std::to_string(columns) + ",\"predictions\":[";
  for (std::int64_t r = 0; r < request.rows; ++r) {
    out += r ? ",[" : "[";
    for (std::int64_t c = 0; c < columns; ++c) {
      if (c) out += ',';
      append_number(out, values[static_cast<std::size_t>(r * columns + c)]);
    }
    out += "]";
  }
  out += "]}";
  return Response{200, std::move(out), "application/json"};
}

void Server::check_every_class(const std::vector<float>& labels) const {
  // The metric learners build one prototype (or attention target) per class from the support set
  // (meta/metric_learners.cpp, check_support): a class without a support row cannot be represented.
  const std::string& learner = model_->learner_name();
  if (!meta::needs_every_class(learner)) return;
  std::int64_t classes = model_->num_classes();
  if (classes <= 0) {
    for (float v : labels) classes = std::max(classes, static_cast<std::int64_t>(v) + 1);
  }
  if (classes > (1 << 20)) return;  // labels that large are refused by the model with their own message
  std::vector<bool> seen(static_cast<std::size_t>(classes), false);
  for (float v : labels) {
    if (v >= 0 && v < static_cast<float>(classes)) seen[static_cast<std::size_t>(v)] = true;
  }
  std::string missing;
  int listed = 0, count = 0;
  for (std::int64_t c = 0; c < classes; ++c) {
    if (seen[static_cast<std::size_t>(c)]) continue;
    ++count;
    if (listed < 10) {
      missing += (listed ? ", " : "") + std::to_string(c);
      ++listed;
    }
  }
  if (count == 0) return;
  if (count > listed) missing += ", ... (" + std::to_string(count) + " in all)";
  throw RequestError(400, "metatape: serve: the support set has no row of class " + missing + ": learner '" + learner +
                              "' needs at least one support row of every class 0.." + std::to_string(classes - 1) +
                              " (add a row of each missing class, or number the classes present 0..n-1)");
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
  if (loop_) {
    const LoopStats l = loop_->stats();
    out << "# HELP metatape_connections_open Client connections open now.\n# TYPE metatape_connections_open gauge\n"
        << "metatape_connections_open " << l.open_connections << "\n"
        << "# HELP metatape_connections_total Client connections accepted.\n# TYPE metatape_connections_total counter\n"
        << "metatape_connections_total " << l.accepted << "\n"
        << "# HELP metatape_requests_queued Complete requests waiting for a worker.\n# TYPE metatape_requests_queued "
           "gauge\n"
        << "metatape_requests_queued " << l.queued << "\n"
        << "# HELP metatape_request_body_bytes Request bodies held in memory (announced, not yet run).\n"
        << "# TYPE metatape_request_body_bytes gauge\nmetatape_request_body_bytes " << l.buffered_bytes << "\n"
        << "# HELP metatape_connections_refused_total Connections the connection layer answered with an error and "
           "closed.\n"
        << "# TYPE metatape_connections_refused_total counter\n";
    const std::pair<const char*, std::int64_t> reasons[] = {
        {"busy", l.rejected_busy},         {"queue_full", l.rejected_queue_full}, {"head_timeout", l.head_timeouts},
        {"body_timeout", l.body_timeouts}, {"write_timeout", l.write_timeouts},   {"too_large", l.too_large},
        {"memory", l.rejected_memory}};
    for (const auto& [reason, n] : reasons) {
      out << "metatape_connections_refused_total{reason=\"" << reason << "\"} " << n << "\n";
    }
  }
  return out.str();
}

int Server::bind() {
  if (http_) fail("serve: already bound");
  http_ = std::make_unique<Router>();
  http_->set_payload_max_length(options_.max_body_bytes);
  // Only for the Keep-Alive header httplib writes; HttpLoop enforces both.
  http_->set_keep_alive_max_count(static_cast<std::size_t>(options_.keep_alive_max));
  http_->set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(options_.idle_timeout.count() / 1000)));
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
  // httplib answers some requests itself (400 on a malformed request line, 414 on a long URI, 404 on
  // an unknown method): give them a JSON body too.
  http_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string message = res.status == 413
                                    ? "metatape: serve: the request body is too large"
                                    : "metatape: serve: bad request (HTTP status " + std::to_string(res.status) + ")";
    res.set_content(error_body(message), "application/json");
  });
  LoopOptions lo;
  lo.threads = options_.threads;
  lo.max_connections = options_.max_connections;
  lo.queue_length = options_.queue_length;
  lo.backlog = options_.backlog;
  lo.keep_alive_max = options_.keep_alive_max;
  lo.head_timeout = options_.head_timeout;
  lo.body_timeout = options_.body_timeout;
  lo.idle_timeout = options_.idle_timeout;
  lo.write_timeout = options_.write_timeout;
  lo.max_head_bytes = options_.max_head_bytes;
  lo.max_body_bytes = options_.max_body_bytes;
  lo.max_buffered_bytes = std::max(options_.max_buffered_bytes, 4 * options_.max_body_bytes);
  lo.spawn = options_.spawn_thread;
  loop_ = std::make_unique<HttpLoop>(
      lo,
      [this](httplib::Stream& stream, bool close_connection, bool& connection_closed) {
        return http_->process(stream, close_connection, connection_closed);
      },
      [](int, const std::string& message) { return error_body(message); });
  try {
    port_ = loop_->bind(options_.host, options_.port);
  } catch (...) {
    loop_.reset();
    http_.reset();
    throw;
  }
  return port_;
}

void Server::run() {
  if (!loop_) fail("serve: run() before bind()");
  loop_->run();
}

int Server::start() {
  const int port = bind();
  auto spawn =
      options_.spawn_thread ? options_.spawn_thread : [](std::function<void()> f) { return std::thread(std::move(f)); };
  try {
    thread_ = spawn([this] { run(); });
  } catch (const std::exception& e) {
    loop_.reset();  // joins the workers
    http_.reset();
    fail(std::string("serve: cannot start the I/O thread (") + e.what() +
         "); raise this process's memory or thread limits (ulimit -v, ulimit -u)");
  }
  // The socket listens from bind() on: connections made before the loop starts wait in the backlog.
  return port;
}

void Server::stop() {
  if (loop_) loop_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace metatape::serve
