// The server's limits over real loopback sockets: slow clients cannot starve the workers, the head
// and body deadlines (408), the size limits (413, 431, 411), the connection cap and the request queue
// (503), the listen backlog, keep-alive and pipelining, 100-continue, worker-thread start failures,
// option ranges; and the replies' JSON: non-finite results are 422, a protonet support set missing a
// class is 400. Every wait here is bounded (a few seconds at most, generous for ASan builds).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "meta/learners.h"
#include "nn/mlp.h"
#include "serve/http_loop.h"
#include "serve/server.h"

using namespace metatape;
using nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

fs::path test_dir() {
  const fs::path dir = fs::temp_directory_path() / ("metatape_serve_limits_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::shared_ptr<capi::InferenceModel> load(const std::string& learner_name, std::vector<std::int64_t> sizes,
                                           const std::string& config) {
  nn::MlpSpec spec;
  spec.sizes = std::move(sizes);
  auto mlp = std::make_shared<const nn::Mlp>(spec);
  Generator gen(7);
  meta::LearnerOptions options;
  options.maml.inner_steps = 2;
  auto learner = meta::make_learner(learner_name, mlp, mlp->init(gen), nn::make_adam({}), options);
  static int made = 0;
  const std::string path = (test_dir() / (learner_name + std::to_string(++made) + ".ckpt")).string();
  meta::save_learner(path, *learner, &gen, config);
  return capi::InferenceModel::load(path);
}

// A 2-input maml regression model (mlp 2-8-1).
std::shared_ptr<capi::InferenceModel> maml() {
  static auto m = load("maml", {2, 8, 1}, R"({"task_kind": "regression"})");
  return m;
}

serve::ServerOptions loopback() {
  serve::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 2;
  return o;
}

// A blocking loopback TCP connection, closed on destruction.
class Socket {
 public:
  explicit Socket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  bool connected() const { return connected_; }

  bool send_all(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }
  // Reads until the peer closes, `until` has arrived (with `until` empty: until the peer closes), or
  // `limit` has passed.
  std::string read_for(std::chrono::milliseconds limit, const std::string& until = "") {
    std::string got;
    const auto end = Clock::now() + limit;
    while (!closed_ && Clock::now() < end && (until.empty() || got.find(until) == std::string::npos)) {
      got += read_once(end);
    }
    return got;
  }
  // What one recv() returns, waiting at most until `end`.
  std::string read_once(Clock::time_point end) {
    pollfd p{fd_, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(1, left))) <= 0) return "";
    char buffer[4096];
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      closed_ = true;
      return "";
    }
    return std::string(buffer, static_cast<std::size_t>(n));
  }
  // Reads one whole reply with a Content-Length body (bounded by `limit`).
  std::string read_reply(std::chrono::milliseconds limit = 5000ms) {
    std::string got = pending_;
    pending_.clear();
    const auto end = Clock::now() + limit;
    for (;;) {
      const std::size_t head = got.find("\r\n\r\n");
      if (head != std::string::npos) {
        std::size_t length = 0;
        const std::size_t cl = got.find("Content-Length: ");
        if (cl != std::string::npos && cl < head) length = std::stoul(got.substr(cl + 16));
        if (got.size() >= head + 4 + length) {
          pending_ = got.substr(head + 4 + length);
          return got.substr(0, head + 4 + length);
        }
      }
      if (Clock::now() >= end || closed_) return got;
      got += read_once(end);
    }
  }
  // True while the server keeps the connection open without having sent anything.
  bool open_and_silent() const {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false, closed_ = false;
  std::string pending_;
};

int status_of(const std::string& reply) {
  if (reply.rfind("HTTP/1.1 ", 0) != 0 || reply.size() < 12) return -1;
  return std::stoi(reply.substr(9, 3));
}

json body_of(const std::string& reply) {
  const std::size_t head = reply.find("\r\n\r\n");
  return head == std::string::npos ? json() : json::parse(reply.substr(head + 4), nullptr, false);
}

// Expects `status` and a JSON {"error": ...} containing `needle`.
void expect_reply(const std::string& reply, int status, const std::string& needle) {
  INFO("reply: " << reply);
  CHECK(status_of(reply) == status);
  const json body = body_of(reply);
  REQUIRE(body.is_object());
  REQUIRE(body.contains("error"));
  CHECK(body["error"].get<std::string>().find(needle) != std::string::npos);
}

// Runs an HttpLoop on its own thread; stops and joins it on destruction, also when a check fails.
class Running {
 public:
  explicit Running(serve::HttpLoop& loop) : loop_(loop), thread_([&loop] { loop.run(); }) {}
  ~Running() { stop(); }
  void stop() {
    loop_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  serve::HttpLoop& loop_;
  std::thread thread_;
};

template <class Predicate>
bool wait_until(Predicate ready, std::chrono::milliseconds limit = 5000ms) {
  const auto end = Clock::now() + limit;
  while (!ready()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace

TEST_CASE("serve: slow clients on every worker, and one more, do not stop /healthz") {
  serve::ServerOptions o = loopback();
  // Deadlines far beyond the test: /healthz must answer because slow clients hold no worker, not
  // because they were dropped.
  o.head_timeout = 60s;
  o.body_timeout = 60s;
  serve::Server server(maml(), o);
  const int port = server.start();
  const int n = o.threads + 1;
  std::vector<std::unique_ptr<Socket>> slow;
  for (int i = 0; i < n; ++i) {
    slow.push_back(std::make_unique<Socket>(port));
    REQUIRE(slow.back()->connected());
  }
  // Each slow client sends its request one byte at a time, every 20 ms: at most 400 bytes, 8 s, and
  // it stops as soon as the check is over. Half of them dribble the head, half the body.
  const std::string head_dribble = "POST /v1/adapt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + std::string(400, 'a');
  const std::string body_dribble =
      "POST /v1/adapt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400\r\n\r\n" + std::string(400, ' ');
  std::atomic<bool> done{false};
  std::atomic<int> rounds{0};
  std::thread dribbler([&] {
    std::size_t sent[8] = {};
    for (int round = 0; round < 400 && !done; ++round) {
      for (int i = 0; i < n; ++i) {
        const std::string& text = i % 2 ? body_dribble : head_dribble;
        // The body dribblers send their head at once, then the body byte by byte.
        const std::size_t first = i % 2 && sent[i] == 0 ? text.find("\r\n\r\n") + 4 : 1;
        if (sent[i] + first <= text.size()) {
          slow[static_cast<std::size_t>(i)]->send_all(text.substr(sent[i], first));
          sent[i] += first;
        }
      }
      ++rounds;
      std::this_thread::sleep_for(20ms);
    }
  });
  const bool started = wait_until([&] { return rounds >= 5; });
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  const auto t0 = Clock::now();
  auto health = client.Get("/healthz");
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const int rounds_at_answer = rounds;
  done = true;
  dribbler.join();
  CHECK(started);
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body).at("status") == "ok");
  CHECK(seconds < 3.0);
  CHECK(rounds_at_answer < 400);                     // answered while the slow clients were still sending
  for (auto& s : slow) CHECK(s->open_and_silent());  // held, not dropped to make room
  server.stop();
}

TEST_CASE("serve: a request head or body that does not arrive in time is answered 408") {
  serve::ServerOptions o = loopback();
  o.head_timeout = 300ms;
  o.body_timeout = 300ms;
  serve::Server server(maml(), o);
  const int port = server.start();
  {
    Socket s(port);
    REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n"));  // the head never ends
    expect_reply(s.read_for(5000ms), 408, "the request head (request line and headers) did not arrive within 0.3 s");
  }
  {
    Socket s(port);
    REQUIRE(s.send_all("POST /v1/adapt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"x\": [[1"));
    expect_reply(s.read_for(5000ms), 408, "did not arrive within 0.3 s of its head (9 of 100 bytes came)");
  }
  {
    Socket s(port);  // sends nothing: closed without a reply
    const std::string got = s.read_for(5000ms);
    CHECK(got.empty());
    CHECK(s.closed());
  }
  // A kept-alive connection that stays idle is closed after the idle timeout.
  {
    serve::ServerOptions k = loopback();
    k.idle_timeout = 200ms;
    serve::Server keep(maml(), k);
    Socket s(keep.start());
    REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(status_of(s.read_reply()) == 200);
    CHECK(s.read_for(5000ms).empty());
    CHECK(s.closed());
  }
  const std::string metrics = server.metrics_text();
  CHECK(metrics.find("metatape_connections_refused_total{reason=\"head_timeout\"} 1\n") != std::string::npos);
  CHECK(metrics.find("metatape_connections_refused_total{reason=\"body_timeout\"} 1\n") != std::string::npos);
  server.stop();
}

TEST_CASE("serve: oversized heads and bodies, and bodies without a length, are refused before reading them") {
  serve::ServerOptions o = loopback();
  o.max_body_bytes = 1000;
  serve::Server server(maml(), o);
  const int port = server.start();
  {
    Socket s(port);
    REQUIRE(s.send_all("POST /v1/adapt HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n"));
    expect_reply(s.read_for(5000ms), 413, "too large: it has 10000000000 bytes (Content-Length), the limit is 1000");
  }
  {
    Socket s(port);
    REQUIRE(
        s.send_all("POST /v1/adapt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
    expect_reply(s.read_for(5000ms), 411, "send the body with a Content-Length header");
  }
  {
    Socket s(port);
    REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 12, 13\r\n\r\n"));
    expect_reply(s.read_for(5000ms), 400, "Content-Length header '12, 13'");
  }
  {
    Socket s(port);
    REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(40000, 'b') + "\r\n\r\n"));
    expect_reply(s.read_for(5000ms), 431, "exceeds 32768 bytes");
  }
  server.stop();
}

TEST_CASE("serve: keep-alive, pipelined requests and Expect: 100-continue") {
  serve::Server server(maml(), loopback());
  const int port = server.start();
  Socket s(port);
  // Two requests in one write: two replies, in order, on the same connection.
  REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string first = s.read_reply(), second = s.read_reply();
  CHECK(status_of(first) == 200);
  expect_reply(second, 404, "no route /nowhere");
  // 100-continue: one interim reply, then the final one after the body.
  const std::string body = R"({"x": [[0.1, 0.2]], "y": [0.5]})";
  REQUIRE(s.send_all("POST /v1/adapt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n"));
  const std::string interim = s.read_for(5000ms, "\r\n\r\n");
  CHECK(interim == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(s.send_all(body));
  const std::string reply = s.read_reply();
  INFO(reply);
  CHECK(status_of(reply) == 200);
  CHECK(body_of(reply).contains("model_id"));
  // Connection: close is honoured.
  REQUIRE(s.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  CHECK(status_of(s.read_reply()) == 200);
  CHECK(s.read_for(5000ms).empty());
  CHECK(s.closed());
  server.stop();
}

TEST_CASE("serve: beyond --max-connections a connection is answered 503 and closed") {
  serve::ServerOptions o = loopback();
  o.max_connections = 2;
  serve::Server server(maml(), o);
  const int port = server.start();
  Socket a(port), b(port);
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  REQUIRE(wait_until([&] { return server.metrics_text().find("metatape_connections_open 2\n") != std::string::npos; }));
  Socket c(port);
  expect_reply(c.read_for(5000ms), 503, "maximum of 2 connections (--max-connections)");
  // The held connections still work.
  REQUIRE(a.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(status_of(a.read_reply()) == 200);
  server.stop();
}

TEST_CASE("serve: a full request queue is answered 503; queued requests still run") {
  std::mutex mutex;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> running{0};
  serve::LoopOptions lo;
  lo.threads = 1;
  lo.queue_length = 1;
  serve::HttpLoop loop(
      lo,
      [&](httplib::Stream& stream, bool, bool&) {
        char buffer[256];
        while (stream.read(buffer, sizeof(buffer)) > 0) {}
        ++running;
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return release; });
        stream.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        return true;
      },
      [](int, const std::string& message) {
        return json{{"error", message}}.dump();
      });
  const int port = loop.bind("127.0.0.1", 0);
  // Released before the loop stops, also when a check fails.
  struct Release {
    std::mutex& mutex;
    std::condition_variable& cv;
    bool& release;
    ~Release() {
      {
        std::lock_guard<std::mutex> lock(mutex);
        release = true;
      }
      cv.notify_all();
    }
  };
  Running running_loop(loop);
  Release release_guard{mutex, cv, release};
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  Socket a(port), b(port), c(port);
  REQUIRE(a.send_all(request));
  const bool a_running = wait_until([&] { return running == 1; });
  REQUIRE(b.send_all(request));
  const bool b_queued = wait_until([&] { return loop.stats().queued == 1; });
  REQUIRE(c.send_all(request));
  const std::string refused = c.read_for(5000ms);
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  cv.notify_all();
  const std::string ra = a.read_reply(), rb = b.read_reply();
  running_loop.stop();
  CHECK(a_running);
  CHECK(b_queued);
  expect_reply(refused, 503, "all 1 workers are busy and 1 requests are waiting");
  CHECK(refused.find("Retry-After: 1\r\n") != std::string::npos);
  CHECK(ra.find("\r\n\r\nok") != std::string::npos);
  CHECK(rb.find("\r\n\r\nok") != std::string::npos);
  CHECK(loop.stats().rejected_queue_full == 1);
}

TEST_CASE("serve: bodies in memory are bounded across connections (503 beyond), and freed after use") {
  serve::LoopOptions lo;
  lo.threads = 1;
  lo.max_body_bytes = 100;
  lo.max_buffered_bytes = 100;
  serve::HttpLoop loop(
      lo,
      [](httplib::Stream& stream, bool, bool&) {
        char buffer[256];
        std::string request;  // the whole request, head and body
        for (ssize_t r; (r = stream.read(buffer, sizeof(buffer))) > 0;)
          request.append(buffer, static_cast<std::size_t>(r));
        const std::string body = std::to_string(request.size() - request.find("\r\n\r\n") - 4);
        stream.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        return true;
      },
      [](int, const std::string& message) {
        return json{{"error", message}}.dump();
      });
  const int port = loop.bind("127.0.0.1", 0);
  Running running_loop(loop);
  auto head = [](int length) {
    return "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  };
  Socket a(port), b(port);
  REQUIRE(a.send_all(head(80) + std::string(10, 'a')));  // 80 bytes announced, 10 sent
  REQUIRE(wait_until([&] { return loop.stats().buffered_bytes == 80; }));
  REQUIRE(b.send_all(head(50)));
  const std::string refused = b.read_for(5000ms);
  REQUIRE(a.send_all(std::string(70, 'a')));
  const std::string ra = a.read_reply();
  // a's 80 bytes are released once its worker hands the connection back (just after the reply
  // left): the same 50-byte body then fits.
  const bool released = wait_until([&] { return loop.stats().buffered_bytes == 0; });
  Socket c(port);
  REQUIRE(c.send_all(head(50) + std::string(50, 'c')));
  const std::string rc = c.read_reply();
  running_loop.stop();
  CHECK(released);
  CHECK(loop.stats().buffered_bytes == 0);
  expect_reply(refused, 503, "too many request bodies at once (80 bytes)");
  CHECK(ra.find("\r\n\r\n80") != std::string::npos);
  CHECK(rc.find("\r\n\r\n50") != std::string::npos);
  CHECK(loop.stats().rejected_memory == 1);
}

TEST_CASE("serve: the listen backlog holds many connections made before the loop accepts") {
  serve::LoopOptions lo;
  lo.threads = 1;
  serve::HttpLoop loop(
      lo, [](httplib::Stream&, bool, bool&) { return false; }, [](int, const std::string& m) { return m; });
  const int port = loop.bind("127.0.0.1", 0);  // listening, nothing accepting yet
  // With the old backlog of 5 the kernel drops the SYNs beyond the first few and those connects wait
  // for a retransmission (1 s and more); with the default backlog all complete at once.
  constexpr int kClients = 64;
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    CHECK((rc == 0 || errno == EINPROGRESS));
  }
  int connected = 0;
  const auto end = Clock::now() + 800ms;
  for (int fd : fds) {
    pollfd p{fd, POLLOUT, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<long long>(0, left))) == 1) {
      int error = 0;
      socklen_t len = sizeof(error);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error == 0) ++connected;
    }
  }
  for (int fd : fds) ::close(fd);
  CHECK(connected == kClients);
}

TEST_CASE("serve: options outside their ranges are refused naming the flag, the value and the limit") {
  auto refused = [](serve::ServerOptions o, const std::string& needle) {
    CHECK_THROWS_WITH_AS(serve::Server(maml(), o), doctest::Contains(needle.c_str()), serve::OptionError);
  };
  serve::ServerOptions o;
  o.threads = 1024;
  refused(o, "--threads 1024 is outside [1, 256]");
  o.threads = 0;
  refused(o, "--threads 0 is outside [1, 256]");
  o = {};
  o.max_connections = 5000;
  refused(o, "--max-connections 5000 is outside [1, 1000]");
  o = {};
  o.queue_length = 0;
  refused(o, "--queue-length 0 is outside");
  o = {};
  o.backlog = 70000;
  refused(o, "--backlog 70000 is outside [1, 65535]");
  o = {};
  o.head_timeout = 0ms;
  refused(o, "--head-timeout-s must be positive");
  o = {};
  o.threads = serve::ServerOptions::kMaxThreads;
  CHECK_NOTHROW(serve::Server(maml(), o));
}

TEST_CASE("serve: a worker thread that cannot be started is a clear error, not a hang") {
  for (int fail_at : {0, 2}) {
    serve::ServerOptions o = loopback();
    o.threads = 4;
    int made = 0;
    o.spawn_thread = [&](std::function<void()> f) {
      if (made == fail_at) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      ++made;
      return std::thread(std::move(f));
    };
    serve::Server server(maml(), o);
    const std::string needle = "cannot start worker thread " + std::to_string(fail_at + 1) +
                               " of 4 (Resource temporarily unavailable); lower --threads";
    CHECK_THROWS_WITH_AS(server.bind(), doctest::Contains(needle.c_str()), Error);
  }
  // The I/O thread of start() too.
  serve::ServerOptions o = loopback();
  o.threads = 2;
  int made = 0;
  o.spawn_thread = [&](std::function<void()> f) {
    if (made == 2) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
    ++made;
    return std::thread(std::move(f));
  };
  serve::Server server(maml(), o);
  CHECK_THROWS_WITH_AS(server.start(), doctest::Contains("cannot start the I/O thread"), Error);
}

TEST_CASE("serve: non-finite model outputs are 422 with a JSON body, never NaN in the reply") {
  serve::Server server(maml(), {});
  const serve::Response a =
      server.handle("POST", "/v1/adapt", "", R"({"x": [[0.1, 0.2], [0.3, -0.4]], "y": [0.5, -1.0], "steps": 1})");
  REQUIRE(a.status == 200);
  const std::string id = json::parse(a.body).at("model_id");
  // Finite float32 inputs whose products overflow: the outputs are Inf or NaN.
  const std::string huge =
      R"({"model_id": ")" + id +
      R"(", "x": [[0.5, 0.5], [3.4e38, 3.4e38], [3.4e38, -3.4e38], [-3.4e38, 3.4e38], [-3.4e38, -3.4e38]]})";
  const serve::Response p = server.handle("POST", "/v1/predict", "", huge);
  INFO(p.body);
  CHECK(p.status == 422);
  const json body = json::parse(p.body, nullptr, false);
  REQUIRE(body.is_object());
  const std::string message = body.at("error");
  // The model's check (capi/inference_model.cpp) names the first non-finite element; row 0 is finite.
  CHECK(message.find("the output is not finite: output[") != std::string::npos);
  CHECK(message.find("output[0,") == std::string::npos);
  CHECK(message.find("scale the inputs") != std::string::npos);
  CHECK(p.body.find("nan") == std::string::npos);
  CHECK(p.body.find("inf\"") == std::string::npos);
  // A support set of the same size: the adapted parameters are not finite, so nothing is stored.
  const serve::Response bad = server.handle(
      "POST", "/v1/adapt", "", R"({"x": [[3e38, -3e38], [-3.4e38, 3.4e38]], "y": [3e38, -3e38], "steps": 1})");
  INFO(bad.body);
  CHECK(bad.status == 422);
  CHECK(json::parse(bad.body).at("error").get<std::string>().find("not finite") != std::string::npos);
  CHECK(server.cache().stats().entries == 1);
  // Finite outputs are written as the shortest text that reads back as the same float32.
  const serve::Response ok =
      server.handle("POST", "/v1/predict", "", json{{"model_id", id}, {"x", {{0.5, 0.5}}}}.dump());
  REQUIRE(ok.status == 200);
  const float value = json::parse(ok.body).at("predictions")[0][0].get<float>();
  std::int64_t columns = 0;
  const float x[] = {0.1f, 0.2f, 0.3f, -0.4f}, y[] = {0.5f, -1.0f}, q[] = {0.5f, 0.5f};
  const capi::Adapted direct = maml()->adapt(x, 2, 2, y, 1, 1);
  CHECK(value == maml()->predict(direct, q, 1, 2, columns)[0]);
}

TEST_CASE("serve: a protonet support set missing a class is a 400 naming the class") {
  serve::Server server(load("protonet", {2, 8, 3}, "{}"), {});
  const serve::Response r =
      server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5], [9, 9]], "y": [0, 2, 2]})");
  INFO(r.body);
  CHECK(r.status == 400);
  const std::string message = json::parse(r.body).at("error");
  CHECK(message.find("the support set has no row of class 1: learner 'protonet' needs at least one support row of "
                     "every class 0..2") != std::string::npos);
  const serve::Response many = server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5]], "y": [0, 4]})");
  CHECK(many.status == 400);
  CHECK(json::parse(many.body).at("error").get<std::string>().find("class 1, 2, 3:") != std::string::npos);
  CHECK(server.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5], [9, 9]], "y": [0, 1, 2]})").status == 200);
  // matching nets need every class too; maml classification does not.
  serve::Server matching(load("matching", {2, 8, 3}, "{}"), {});
  CHECK(matching.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5]], "y": [0, 2]})").status == 400);
  serve::Server maml_classes(load("maml", {2, 8, 3}, R"({"task_kind": "classification"})"), {});
  const serve::Response m = maml_classes.handle("POST", "/v1/adapt", "", R"({"x": [[0, 0], [5, 5]], "y": [0, 2]})");
  INFO(m.body);
  CHECK(m.status == 200);
}
