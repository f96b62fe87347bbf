// metatape_serve_load: drives a running `metatape serve` on loopback with adapt + predict pairs.
//   metatape_serve_load --port P [--clients 8] [--seconds 10] [--support 10] [--query 10]
//                       [--token T] [--server-pid PID] [--sample-every 30]
// Each client thread loops: POST /v1/adapt (a sinusoid support set of --support rows, random
// amplitude and phase), then POST /v1/predict on the returned id (--query rows), on its own
// keep-alive connection, until --seconds have passed. Prints one JSON line: clients, pairs, errors,
// pairs/s, requests/s, p50/p99 of adapt, predict and the pair (ms), and the server's VmRSS (kB)
// before and after (and every --sample-every seconds) when --server-pid is given.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

long rss_kb(long pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  int port = 8080, clients = 8, support = 10, query = 10;
  double seconds = 10, sample_every = 30;
  long server_pid = 0;
  std::string token;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      port = std::stoi(v);
    else if (k == "--clients")
      clients = std::stoi(v);
    else if (k == "--seconds")
      seconds = std::stod(v);
    else if (k == "--support")
      support = std::stoi(v);
    else if (k == "--query")
      query = std::stoi(v);
    else if (k == "--token")
      token = v;
    else if (k == "--server-pid")
      server_pid = std::stol(v);
    else if (k == "--sample-every")
      sample_every = std::stod(v);
    else {
      std::fprintf(stderr, "metatape_serve_load: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  httplib::Client probe("127.0.0.1", port);
  auto health = probe.Get("/healthz");
  if (!health || health->status != 200) {
    std::fprintf(stderr, "metatape_serve_load: no server answering on 127.0.0.1:%d\n", port);
    return 1;
  }
  const int features = nlohmann::json::parse(health->body).at("in_features").get<int>();

  const long rss_before = rss_kb(server_pid);
  std::vector<long> rss_samples;
  std::mutex mutex;
  std::vector<double> adapt_ms, predict_ms, pair_ms;
  std::atomic<long> errors{0}, pairs{0};
  std::map<std::string, long> error_kinds;  // "adapt 404", "predict Connection", ...
  auto count_error = [&](const char* what, const httplib::Result& res) {
    ++errors;
    const std::string kind =
        std::string(what) + " " + (res ? std::to_string(res->status) : httplib::to_string(res.error()));
    std::lock_guard<std::mutex> lock(mutex);
    ++error_kinds[kind];
  };
  std::atomic<bool> done{false};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  auto client_loop = [&](int id) {
    httplib::Client client("127.0.0.1", port);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);
    client.set_read_timeout(30, 0);
    if (!token.empty()) client.set_bearer_token_auth(token.c_str());
    std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1u);
    std::uniform_real_distribution<double> u(-5.0, 5.0), amp(0.1, 5.0), phase(0.0, 3.14159);
    std::vector<double> a_local, p_local, pair_local;
    while (std::chrono::steady_clock::now() < deadline) {
      const double a = amp(rng), ph = phase(rng);
      nlohmann::json x = nlohmann::json::array(), y = nlohmann::json::array(), qx = nlohmann::json::array();
      for (int r = 0; r < support; ++r) {
        nlohmann::json row = nlohmann::json::array();
        for (int f = 0; f < features; ++f) row.push_back(u(rng));
        y.push_back(a * std::sin(row[0].get<double>() - ph));
        x.push_back(std::move(row));
      }
      for (int r = 0; r < query; ++r) {
        nlohmann::json row = nlohmann::json::array();
        for (int f = 0; f < features; ++f) row.push_back(u(rng));
        qx.push_back(std::move(row));
      }
      const auto t0 = std::chrono::steady_clock::now();
      auto res = client.Post("/v1/adapt", nlohmann::json{{"x", x}, {"y", y}}.dump(), "application/json");
      const auto t1 = std::chrono::steady_clock::now();
      if (!res || res->status != 200) {
        count_error("adapt", res);
        continue;
      }
      const std::string id = nlohmann::json::parse(res->body).at("model_id").get<std::string>();
      auto pred = client.Post("/v1/predict", nlohmann::json{{"model_id", id}, {"x", qx}}.dump(), "application/json");
      const auto t2 = std::chrono::steady_clock::now();
      if (!pred || pred->status != 200) {
        count_error("predict", pred);
        continue;
      }
      a_local.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      p_local.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      pair_local.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
      ++pairs;
    }
    std::lock_guard<std::mutex> lock(mutex);
    adapt_ms.insert(adapt_ms.end(), a_local.begin(), a_local.end());
    predict_ms.insert(predict_ms.end(), p_local.begin(), p_local.end());
    pair_ms.insert(pair_ms.end(), pair_local.begin(), pair_local.end());
  };
  std::thread sampler([&] {
    auto next = start + std::chrono::duration<double>(sample_every);
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (std::chrono::steady_clock::now() >= next) {
        rss_samples.push_back(rss_kb(server_pid));
        next += std::chrono::duration<double>(sample_every);
      }
    }
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) threads.emplace_back(client_loop, c);
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  done = true;
  sampler.join();
  const long rss_after = rss_kb(server_pid);
  nlohmann::json out = {{"clients", clients},
                        {"seconds", elapsed},
                        {"support_rows", support},
                        {"query_rows", query},
                        {"pairs", pairs.load()},
                        {"errors", errors.load()},
                        {"error_kinds", error_kinds},
                        {"pairs_per_s", static_cast<double>(pairs) / elapsed},
                        {"requests_per_s", 2.0 * static_cast<double>(pairs) / elapsed},
                        {"adapt_p50_ms", percentile(adapt_ms, 0.50)},
                        {"adapt_p99_ms", percentile(adapt_ms, 0.99)},
                        {"predict_p50_ms", percentile(predict_ms, 0.50)},
                        {"predict_p99_ms", percentile(predict_ms, 0.99)},
                        {"pair_p50_ms", percentile(pair_ms, 0.50)},
                        {"pair_p99_ms", percentile(pair_ms, 0.99)},
                        {"server_rss_kb_before", rss_before},
                        {"server_rss_kb_after", rss_after},
                        {"server_rss_kb_samples", rss_samples}};
  std::printf("%s\n", out.dump().c_str());
  return errors.load() == 0 ? 0 : 1;
}
