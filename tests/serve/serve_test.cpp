// The adaptation server: valid requests, each kind of bad request with its status and message, the
// bearer token, the LRU's eviction and time-to-live, /metrics, and real HTTP round trips.
#include <doctest/doctest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "meta/learners.h"
#include "nn/mlp.h"
#include "serve/server.h"
#include "tasks/sinusoid.h"

using namespace metatape;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A 2-input maml checkpoint (mlp 2-8-1), loaded once.
std::shared_ptr<capi::InferenceModel> model() {
  static std::shared_ptr<capi::InferenceModel> loaded = [] {
    const fs::path dir = fs::temp_directory_path() / ("metatape_serve_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    nn::MlpSpec spec;
    spec.sizes = {2, 8, 1};
    auto mlp = std::make_shared<const nn::Mlp>(spec);
    Generator gen(3);
    meta::LearnerOptions options;
    options.maml.inner_steps = 2;
    auto learner = meta::make_learner("maml", mlp, mlp->init(gen), nn::make_adam({}), options);
    const std::string path = (dir / "maml.ckpt").string();
    meta::save_learner(path, *learner, &gen, R"({"task_kind": "regression"})");
    return capi::InferenceModel::load(path);
  }();
  return loaded;
}

const std::string kAdapt = R"({"x": [[0.1, 0.2], [0.3, -0.4], [1.0, 2.0]], "y": [0.5, -1.0, 2.0], "steps": 2})";

std::string adapt_ok(serve::Server& server, const std::string& auth = "") {
  const serve::Response r = server.handle("POST", "/v1/adapt", auth, kAdapt);
  INFO(r.body);
  REQUIRE(r.status == 200);
  return json::parse(r.body).at("model_id").get<std::string>();
}

// Expects `status` and an {"error": ...} body containing `needle`.
void expect(const serve::Response& r, int status, const std::string& needle) {
  INFO("status " << r.status << " body " << r.body);
  CHECK(r.status == status);
  const json body = json::parse(r.body, nullptr, false);
  REQUIRE(body.is_object());
  REQUIRE(body.contains("error"));
  CHECK(body["error"].get<std::string>().find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("serve: adapt then predict matches the model adapted directly") {
  serve::Server server(model(), {});
  const serve::Response health = server.handle("GET", "/healthz", "", "");
  CHECK(health.status == 200);
  CHECK(json::parse(health.body).at("in_features") == 2);
  const serve::Response a = server.handle("POST", "/v1/adapt", "", kAdapt);
  REQUIRE(a.status == 200);
  const json aj = json::parse(a.body);
  CHECK(aj.at("model_id").get<std::string>().size() == 32);
  CHECK(aj.at("support_rows") == 3);
  CHECK(aj.at("steps") == 2);
  CHECK(aj.at("bytes") == (16 + 8 + 8 + 1) * 4);
  const serve::Response p = server.handle("POST", "/v1/predict", "",
                                          json{{"model_id", aj["model_id"]}, {"x", {{0.5, 0.5}, {-1.0, 2.0}}}}.dump());
  INFO(p.body);
  REQUIRE(p.status == 200);
  const json pj = json::parse(p.body);
  CHECK(pj.at("rows") == 2);
  CHECK(pj.at("columns") == 1);

  const float x[] = {0.1f, 0.2f, 0.3f, -0.4f, 1.0f, 2.0f}, y[] = {0.5f, -1.0f, 2.0f}, q[] = {0.5f, 0.5f, -1.0f, 2.0f};
  const capi::Adapted direct = model()->adapt(x, 3, 2, y, 1, 2);
  std::int64_t columns = 0;
  const std::vector<float> expect_values = model()->predict(direct, q, 2, 2, columns);
  CHECK(pj["predictions"][0][0].get<double>() == doctest::Approx(expect_values[0]).epsilon(1e-7));
  CHECK(pj["predictions"][1][0].get<double>() == doctest::Approx(expect_values[1]).epsilon(1e-7));
  // y as rows x 1 works the same; steps defaults to the learner's.
  const serve::Response b = server.handle("POST", "/v1/adapt", "", R"({"x": [[0.1, 0.2]], "y": [[0.5]]})");
  CHECK(b.status == 200);
  CHECK(json::parse(b.body).at("steps") == 2);
}

TEST_CASE("serve: each kind of bad request gets its status and a message naming the problem") {
  serve::ServerOptions o;
  o.max_support_rows = 4;
  o.max_body_bytes = 2000;
  o.max_steps = 10;
  serve::Server server(model(), o);
  auto adapt = [&](const std::string& body) { return server.handle("POST", "/v1/adapt", "", body); };
  expect(adapt(""), 400, "empty");
  expect(adapt("{\"x\": [[1, 2]"), 400, "not valid JSON");
  expect(adapt("[1, 2]"), 400, "JSON object");
  expect(adapt(R"({"y": [1]})"), 400, "missing field \"x\"");
  expect(adapt(R"({"x": [[1, 2]]})"), 400, "missing field \"y\"");
  expect(adapt(R"({"x": 5, "y": [1]})"), 400, "x must be an array");
  expect(adapt(R"({"x": [], "y": []})"), 400, "x has no rows");
  expect(adapt(R"({"x": [[1, 2, 3]], "y": [1]})"), 400, "x[0] has 3 values, the model expects 2");
  expect(adapt(R"({"x": [[1, 2], 7], "y": [1, 2]})"), 400, "x[1] must be an array");
  expect(adapt(R"({"x": [[1, "a"]], "y": [1]})"), 400, "x[0][1] must be a number");
  expect(adapt(R"({"x": [[1, 2], [1e999, 0]], "y": [1, 2]})"), 400, "x[1][0] is not finite");
  expect(adapt(R"({"x": [[1, 2]], "y": [-1e999]})"), 400, "y[0] is not finite");
  expect(adapt(R"({"x": [[1, 2], [3, NaN]], "y": [1, 2]})"), 400, "x[1][1]");
  expect(adapt(R"({"x": [[1, 2]], "y": [Infinity]})"), 400, "y[0]");
  expect(adapt(R"({"x": [[1, 1e39]], "y": [1]})"), 400, "x[0][1] = 1e+39 overflows float32");
  expect(adapt(R"({"x": [[1, 2]], "y": [1, 2]})"), 400, "y has 2 rows but x has 1");
  expect(adapt(R"({"x": [[1,2],[1,2],[1,2],[1,2],[1,2]], "y": [1,1,1,1,1]})"), 400,
         "x has 5 rows, the server accepts at most 4");
  expect(adapt(R"({"x": [[1, 2]], "y": [1], "steps": 11})"), 400, "steps = 11 is outside [0, 10]");
  expect(adapt(R"({"x": [[1, 2]], "y": [1], "steps": 1.5})"), 400, "steps must be an integer");
  expect(adapt(R"({"x": [[1, 2]], "y": [1], "steps": -3})"), 400, "steps = -3");
  expect(adapt(std::string(20, '[') + std::string(20, ']')), 400, "nests deeper");
  expect(adapt("{\"x\": [[1, 2]], \"y\": [1], \"pad\": \"" + std::string(3000, 'a') + "\"}"), 413, "limit is 2000");

  auto predict = [&](const std::string& body) { return server.handle("POST", "/v1/predict", "", body); };
  expect(predict(R"({"x": [[1, 2]]})"), 400, "missing field \"model_id\"");
  expect(predict(R"({"model_id": 7, "x": [[1, 2]]})"), 400, "model_id must be a string");
  expect(predict(R"({"model_id": "0123", "x": [[1, 2]]})"), 404, "no adapted model '0123'");
  const std::string id = adapt_ok(server);
  expect(predict(json{{"model_id", id}, {"x", {{1.0, 2.0, 3.0}}}}.dump()), 400, "x[0] has 3 values");
  expect(predict(json{{"model_id", id}, {"x", {{1.0, "z"}}}}.dump()), 400, "x[0][1] must be a number");
  expect(predict(json{{"model_id", id}, {"x", json::array()}}.dump()), 400, "x has no rows");

  expect(server.handle("GET", "/v1/adapt", "", ""), 405, "takes POST, not GET");
  expect(server.handle("POST", "/healthz", "", ""), 405, "takes GET");
  expect(server.handle("GET", "/v2/whatever", "", ""), 404, "no route /v2/whatever");
}

TEST_CASE("serve: classification models take integral labels") {
  const auto dir = fs::temp_directory_path() / ("metatape_serve_test_" + std::to_string(::getpid()));
  nn::MlpSpec spec;
  spec.sizes = {2, 8, 3};
  auto mlp = std::make_shared<const nn::Mlp>(spec);
  Generator gen(5);
  auto learner = meta::make_learner("protonet", mlp, mlp->init(gen), nn::make_adam({}), {});
  const std::string path = (dir / "protonet.ckpt").string();
  meta::save_learner(path, *learner, &gen, "{}");
  serve::Server server(capi::InferenceModel::load(path), {});
  const serve::Response ok =
      server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5], [9, 9]], "y": [0, 1, 2]})");
  INFO(ok.body);
  CHECK(ok.status == 200);
  expect(server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5]], "y": [0, 1.5]})"), 400, "y[1] = 1.5");
  expect(server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5]], "y": [0, -1]})"), 400, "not a class label");
}

TEST_CASE("serve: the bearer token guards /v1/* and /metrics, not /healthz") {
  serve::ServerOptions o;
  o.token = "s3cret-token";
  serve::Server server(model(), o);
  CHECK(server.handle("GET", "/healthz", "", "").status == 200);
  expect(server.handle("POST", "/v1/adapt", "", kAdapt), 401, "missing bearer token");
  expect(server.handle("POST", "/v1/adapt", "Basic abc", kAdapt), 401, "missing bearer token");
  expect(server.handle("POST", "/v1/adapt", "Bearer s3cret-tokem", kAdapt), 401, "wrong bearer token");
  expect(server.handle("POST", "/v1/adapt", "Bearer s3cret", kAdapt), 401, "wrong bearer token");
  expect(server.handle("GET", "/metrics", "", ""), 401, "bearer");
  const std::string id = adapt_ok(server, "Bearer s3cret-token");
  expect(server.handle("POST", "/v1/predict", "", json{{"model_id", id}, {"x", {{1, 2}}}}.dump()), 401, "bearer");
  CHECK(server.handle("POST", "/v1/predict", "Bearer s3cret-token", json{{"model_id", id}, {"x", {{1, 2}}}}.dump())
            .status == 200);
  CHECK(server.handle("GET", "/metrics", "Bearer s3cret-token", "").status == 200);
}

TEST_CASE("serve: the LRU evicts the least recently used model at the memory cap") {
  const std::int64_t bytes = (16 + 8 + 8 + 1) * 4;
  serve::ServerOptions o;
  o.cache.max_bytes = 2 * bytes + bytes / 2;  // room for two adapted models
  serve::Server server(model(), o);
  const std::string a = adapt_ok(server), b = adapt_ok(server);
  auto predict = [&](const std::string& id) {
    return server.handle("POST", "/v1/predict", "", json{{"model_id", id}, {"x", {{1, 2}}}}.dump());
  };
  CHECK(predict(a).status == 200);         // a is now the most recently used
  const std::string c = adapt_ok(server);  // evicts b
  expect(predict(b), 404, "no adapted model");
  CHECK(predict(a).status == 200);
  CHECK(predict(c).status == 200);
  const serve::CacheStats s = server.cache().stats();
  CHECK(s.entries == 2);
  CHECK(s.bytes == 2 * bytes);
  CHECK(s.evicted == 1);
  const std::string metrics = server.metrics_text();
  CHECK(metrics.find("metatape_adapted_models 2\n") != std::string::npos);
  CHECK(metrics.find("metatape_adapted_evictions_total 1\n") != std::string::npos);
  CHECK(metrics.find("metatape_requests_total{route=\"adapt\",code=\"200\"} 3\n") != std::string::npos);
  CHECK(metrics.find("metatape_requests_total{route=\"predict\",code=\"404\"} 1\n") != std::string::npos);
  CHECK(metrics.find("metatape_request_seconds_count{route=\"predict\"} 4\n") != std::string::npos);
  CHECK(metrics.find("metatape_request_seconds_bucket{route=\"adapt\",le=\"+Inf\"} 3\n") != std::string::npos);
}

TEST_CASE("serve: cache entry count cap, time-to-live and oversized models") {
  auto adapted = [](std::int64_t bytes) {
    auto a = std::make_shared<capi::Adapted>();
    a->bytes = bytes;
    return a;
  };
  auto now = std::make_shared<serve::AdaptedCache::Clock::time_point>(serve::AdaptedCache::Clock::now());
  serve::CacheOptions o;
  o.max_bytes = 1000;
  o.max_entries = 3;
  o.ttl = std::chrono::seconds(10);
  serve::AdaptedCache cache(o, [now] { return *now; });
  const std::string a = cache.insert(adapted(10)), b = cache.insert(adapted(10)), c = cache.insert(adapted(10));
  CHECK(a != b);
  *now += std::chrono::seconds(6);
  CHECK(cache.find(a) != nullptr);                  // refreshes a
  const std::string d = cache.insert(adapted(10));  // count cap: evicts b (least recently used)
  CHECK(cache.find(b) == nullptr);
  CHECK(cache.stats().evicted == 1);
  *now += std::chrono::seconds(5);  // c is 11 s old, a 5 s, d 5 s
  CHECK(cache.find(c) == nullptr);
  CHECK(cache.stats().expired == 1);
  CHECK(cache.find(a) != nullptr);
  *now += std::chrono::seconds(11);
  CHECK(cache.find(a) == nullptr);
  CHECK(cache.find(d) == nullptr);
  CHECK(cache.stats().entries == 0);
  CHECK(cache.stats().bytes == 0);
  CHECK_THROWS_WITH_AS(cache.insert(adapted(2000)), doctest::Contains("more than the cache's 1000"), Error);
  serve::ServerOptions so;
  so.cache.max_bytes = 10;
  serve::Server tiny(model(), so);
  expect(tiny.handle("POST", "/v1/adapt", "", kAdapt), 507, "more than the cache's 10");
}

TEST_CASE("serve: HTTP round trips on loopback, concurrent clients, the body limit and the token") {
  serve::ServerOptions o;
  o.port = 0;
  o.threads = 4;
  o.max_body_bytes = 4096;
  o.token = "tok";
  serve::Server server(model(), o);
  const int port = server.start();
  REQUIRE(port > 0);
  {
    httplib::Client client("127.0.0.1", port);
    auto health = client.Get("/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
    auto unauthorized = client.Post("/v1/adapt", kAdapt, "application/json");
    REQUIRE(unauthorized);
    CHECK(unauthorized->status == 401);
    client.set_bearer_token_auth("tok");
    auto big = client.Post("/v1/adapt", std::string(8000, ' ') + kAdapt, "application/json");
    REQUIRE(big);
    CHECK(big->status == 413);
    CHECK(big->body.find("too large") != std::string::npos);
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", port);
      client.set_bearer_token_auth("tok");
      client.set_keep_alive(true);
      for (int i = 0; i < 5; ++i) {
        const json body = {{"x", {{0.1 * c, 0.2}, {0.3, -0.4 * i}}}, {"y", {0.5, -1.0}}};
        auto a = client.Post("/v1/adapt", body.dump(), "application/json");
        if (!a || a->status != 200) {
          ++failures;
          continue;
        }
        const std::string id = json::parse(a->body).at("model_id");
        auto p = client.Post("/v1/predict", json{{"model_id", id}, {"x", {{1.0, 2.0}}}}.dump(), "application/json");
        if (!p || p->status != 200 || json::parse(p->body).at("predictions").size() != 1) ++failures;
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(failures == 0);
  httplib::Client client("127.0.0.1", port);
  client.set_bearer_token_auth("tok");
  auto metrics = client.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("metatape_requests_total{route=\"adapt\",code=\"200\"} 30") != std::string::npos);
  server.stop();
}
