#include "serve/http_loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "kernels/error.h"

namespace metatape::serve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kSweepEvery = std::chrono::milliseconds(50);
constexpr auto kDrainFor = std::chrono::milliseconds(2000);  // lingering close after an error reply
constexpr std::size_t kReadChunk = 16 << 10;

std::string errno_text(int e) { return std::generic_category().message(e); }

std::string seconds_text(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(ms.count()) / 1000.0);
  return text;
}

const char* reason(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &s->sin_addr, text, sizeof(text));
    port = ntohs(s->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof(text));
    port = ntohs(s->sin6_port);
  }
  ip = text;
}

}  // namespace

struct HttpLoop::Conn {
  enum class Phase { idle, head, body, working, writing, draining };
  int fd = -1;
  Phase phase = Phase::head;
  Clock::time_point deadline;
  bool fresh = true;         // no request completed on it yet
  bool peer_closed = false;  // EOF or a read error seen
  bool broken = false;       // a write failed
  std::string in;            // received bytes not yet consumed
  std::size_t scanned = 0;   // bytes of `in` searched for the end of the head
  std::size_t head_end = 0;  // 0: the head is incomplete
  std::size_t request_end = 0;
  std::size_t reserved = 0;  // this request's body bytes counted in reserved_bytes_
  std::string out;           // the reply being sent
  std::size_t out_sent = 0;
  bool close_after_write = false;
  int served = 0;
};

namespace {

// What httplib's request processing reads from and writes to on a worker: the buffered request, and
// memory for the reply. It never touches the socket, so a worker never waits on a client.
class BufferStream final : public httplib::Stream {
 public:
  BufferStream(const std::string& in, std::size_t end, std::string& out, int fd)
      : in_(in), end_(end), out_(out), fd_(fd) {}
  bool is_readable() const override { return pos_ < end_; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const std::size_t n = std::min(size, end_ - pos_);
    std::memcpy(ptr, in_.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    out_.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  const std::string& in_;
  std::size_t end_, pos_ = 0;
  std::string& out_;
  int fd_;
};

// Sends what is left of c.out without blocking; true when all of it is sent or the socket failed.
bool send_pending(int fd, const std::string& out, std::size_t& sent, bool& broken) {
  while (sent < out.size()) {
    const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return false;
    } else {
      broken = true;
      return true;
    }
  }
  return true;
}

}  // namespace

HttpLoop::HttpLoop(LoopOptions options, RequestHandler handler, ErrorBody error_body)
    : options_(std::move(options)), handler_(std::move(handler)), error_body_(std::move(error_body)) {
  if (!options_.spawn) options_.spawn = [](std::function<void()> f) { return std::thread(std::move(f)); };
}

HttpLoop::~HttpLoop() {
  stop();
  join_workers();
  take_returned();
  for (auto& c : conns_) {
    if (c) ::close(c->fd);
  }
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

int HttpLoop::bind(const std::string& host, int port) {
  if (listen_fd_ >= 0) fail("serve: already bound");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) fail("serve: cannot resolve --host '" + host + "': " + ::gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = errno_text(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, options_.backlog) == 0) {
      listen_fd_ = fd;
      break;
    }
    why = errno_text(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) {
    fail("serve: cannot listen on " + host + ":" + std::to_string(port) + ": " + why +
         " (the port is in use, or the host is not an address of this machine; try --port 0)");
  }
  std::string ip;
  int bound = port;
  address_of(listen_fd_, false, ip, bound);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) fail("serve: cannot create the event loop: " + errno_text(errno));
  watch(listen_fd_, EPOLLIN, true);
  watch(wake_fd_, EPOLLIN, true);
  start_workers();
  return bound;
}

void HttpLoop::start_workers() {
  const int n = options_.threads;
  try {
    workers_.reserve(static_cast<std::size_t>(n));
  } catch (const std::exception& e) {
    fail("serve: cannot allocate " + std::to_string(n) + " worker threads (" + e.what() + ")");
  }
  for (int i = 0; i < n; ++i) {
    try {
      workers_.push_back(options_.spawn([this] { worker(); }));
    } catch (const std::exception& e) {
      join_workers();
      fail("serve: cannot start worker thread " + std::to_string(i + 1) + " of " + std::to_string(n) + " (" + e.what() +
           "); lower --threads, or raise this process's memory or thread limits (ulimit -v, ulimit -u)");
    }
  }
}

void HttpLoop::join_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workers_done_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

void HttpLoop::worker() {
  for (;;) {
    std::unique_ptr<Conn> c;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [&] { return workers_done_ || !queue_.empty(); });
      if (queue_.empty()) return;  // done, and every queued request served
      c = std::move(queue_.front());
      queue_.pop_front();
    }
    BufferStream stream(c->in, c->request_end, c->out, c->fd);
    const bool close = c->served + 1 >= options_.keep_alive_max || c->peer_closed || stopping_.load();
    bool closed = false, ok = false;
    try {
      ok = handler_(stream, close, closed);
    } catch (...) {
      ok = false;  // the handler answers errors itself; anything escaping it ends the connection
    }
    c->in.erase(0, c->request_end);
    c->head_end = c->request_end = c->scanned = 0;
    ++c->served;
    c->fresh = false;
    c->close_after_write = !ok || closed || close;
    c->out_sent = 0;
    send_pending(c->fd, c->out, c->out_sent, c->broken);  // most replies leave here, whole
    {
      std::lock_guard<std::mutex> lock(mutex_);
      returned_.push_back(std::move(c));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t w = ::write(wake_fd_, &one, sizeof(one));
  }
}

void HttpLoop::watch(int fd, std::uint32_t events, bool add) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_fd_, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

void HttpLoop::run() {
  if (listen_fd_ < 0) fail("serve: run() before bind()");
  if (ran_) fail("serve: run() called twice");
  ran_ = true;
  epoll_event events[128];
  auto next_sweep = Clock::now() + kSweepEvery;
  auto accept_paused_until = Clock::time_point::min();
  bool accept_paused = false;
  while (!stopping_.load()) {
    const int n = ::epoll_wait(epoll_fd_, events, 128, static_cast<int>(kSweepEvery.count()));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd_) {
        // Out of descriptors: stop watching the listener for a while instead of spinning on it.
        if (!accept_all()) {
          ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
          accept_paused = true;
          accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
        }
      } else if (fd == wake_fd_) {
        std::uint64_t count = 0;
        while (::read(wake_fd_, &count, sizeof(count)) > 0) {}
        take_returned();
      } else {
        on_event(fd, events[i].events);
      }
    }
    const auto now = Clock::now();
    if (accept_paused && now >= accept_paused_until) {
      watch(listen_fd_, EPOLLIN, true);
      accept_paused = false;
    }
    if (now >= next_sweep) {
      sweep();
      next_sweep = now + kSweepEvery;
    }
  }
  // Refuse new connections, let the workers finish what is queued, then close everything.
  ::close(listen_fd_);
  listen_fd_ = -2;  // bound once; not again
  join_workers();
  take_returned();
  for (std::size_t fd = 0; fd < conns_.size(); ++fd) {
    if (conns_[fd]) close_conn(static_cast<int>(fd));
  }
}

void HttpLoop::stop() {
  stopping_ = true;
  if (wake_fd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t w = ::write(wake_fd_, &one, sizeof(one));
  }
}

LoopStats HttpLoop::stats() const {
  LoopStats s;
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    s = stats_;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  s.queued = static_cast<std::int64_t>(queue_.size());
  return s;
}

bool HttpLoop::accept_all() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      return !(e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM);
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // small replies: no Nagle stalls
    std::int64_t open = 0;
    {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      open = stats_.open_connections;
    }
    if (open >= options_.max_connections) {
      const std::string body = error_body_(503, "metatape: serve: the server holds its maximum of " +
                                                    std::to_string(options_.max_connections) +
                                                    " connections (--max-connections); retry shortly");
      const std::string reply =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
      [[maybe_unused]] const ssize_t w = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      std::lock_guard<std::mutex> lock(stats_mutex_);
      ++stats_.rejected_busy;
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->phase = Conn::Phase::head;
    c->deadline = Clock::now() + options_.head_timeout;
    if (conns_.size() <= static_cast<std::size_t>(fd)) conns_.resize(static_cast<std::size_t>(fd) + 1);
    conns_[static_cast<std::size_t>(fd)] = std::move(c);
    watch(fd, EPOLLIN, true);
    std::lock_guard<std::mutex> lock(stats_mutex_);
    ++stats_.accepted;
    ++stats_.open_connections;
  }
}

void HttpLoop::on_event(int fd, std::uint32_t events) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= conns_.size() || !conns_[static_cast<std::size_t>(fd)]) return;
  Conn& c = *conns_[static_cast<std::size_t>(fd)];
  if (c.phase == Conn::Phase::writing) {
    if (send_pending(fd, c.out, c.out_sent, c.broken)) after_write(fd);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    read_from(c);
    advance(fd);
  }
}

void HttpLoop::read_from(Conn& c) {
  char buffer[kReadChunk];
  // Enough for one whole request and then some (pipelined requests wait in the buffer).
  const std::size_t cap = options_.max_head_bytes + options_.max_body_bytes + kReadChunk;
  std::size_t budget = 4 * kReadChunk;  // per event, so one fast client cannot starve the others
  while (budget > 0 && (c.phase == Conn::Phase::draining || c.in.size() < cap)) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (c.phase != Conn::Phase::draining) c.in.append(buffer, static_cast<std::size_t>(n));
      budget -= std::min(budget, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      c.peer_closed = true;  // EOF or a reset
      return;
    }
  }
}

void HttpLoop::advance(int fd) {
  Conn& c = *conns_[static_cast<std::size_t>(fd)];
  const auto now = Clock::now();
  if (c.phase == Conn::Phase::draining) {
    if (c.peer_closed) close_conn(fd);
    return;
  }
  if (c.head_end == 0) {
    // Empty lines before a request line are ignored (RFC 9112 section 2.2).
    std::size_t skip = 0;
    while (c.in.compare(skip, 2, "\r\n") == 0) skip += 2;
    if (skip > 0) c.in.erase(0, skip);
    if (c.phase == Conn::Phase::idle && !c.in.empty()) {
      c.phase = Conn::Phase::head;
      c.deadline = now + options_.head_timeout;
    }
    const std::size_t end = c.in.find("\r\n\r\n", c.scanned >= 3 ? c.scanned - 3 : 0);
    if (end == std::string::npos || end + 4 > options_.max_head_bytes) {
      c.scanned = c.in.size();
      if (c.in.size() > options_.max_head_bytes) {
        {
          std::lock_guard<std::mutex> lock(stats_mutex_);
          ++stats_.too_large;
        }
        reply_and_close(c, 431,
                        "the request head (request line and headers) exceeds " +
                            std::to_string(options_.max_head_bytes) + " bytes");
      } else if (c.peer_closed) {
        close_conn(fd);
      }
      return;
    }
    // The head is complete: find the body's length.
    std::uint64_t length = 0;
    bool has_length = false, expect_continue = false;
    std::size_t expect_begin = 0, expect_size = 0;
    for (std::size_t line = c.in.find("\r\n") + 2; line < end + 2;) {
      const std::size_t eol = c.in.find("\r\n", line);
      const std::string_view text(c.in.data() + line, eol - line);
      const std::size_t colon = text.find(':');
      if (colon != std::string_view::npos) {
        const std::string_view name = trim(text.substr(0, colon)), value = trim(text.substr(colon + 1));
        if (iequals(name, "Content-Length")) {
          std::uint64_t v = 0;
          const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
          if (value.empty() || ec != std::errc() || p != value.data() + value.size() || (has_length && v != length)) {
            reply_and_close(c, 400, "the Content-Length header '" + std::string(value) + "' is not one byte count");
            return;
          }
          length = v;
          has_length = true;
        } else if (iequals(name, "Transfer-Encoding")) {
          reply_and_close(c, 411,
                          "request bodies with Transfer-Encoding (" + std::string(value) +
                              ") are not accepted; send the body with a Content-Length header");
          return;
        } else if (iequals(name, "Expect") && iequals(value, "100-continue")) {
          expect_continue = true;
          expect_begin = line;
          expect_size = eol + 2 - line;
        }
      }
      line = eol + 2;
    }
    if (length > options_.max_body_bytes) {
      {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        ++stats_.too_large;
      }
      reply_and_close(c, 413,
                      "the request body is too large: it has " + std::to_string(length) +
                          " bytes (Content-Length), the limit is " + std::to_string(options_.max_body_bytes) +
                          " (--max-body-kb)");
      return;
    }
    if (length > 0 && reserved_bytes_ + length > options_.max_buffered_bytes) {
      {
        std::lock_guard<std::mutex> lock(stats_mutex_);
        ++stats_.rejected_memory;
      }
      reply_and_close(c, 503,
                      "the server is receiving too many request bodies at once (" + std::to_string(reserved_bytes_) +
                          " bytes); retry shortly",
                      "Retry-After: 1\r\n");
      return;
    }
    c.reserved = static_cast<std::size_t>(length);
    reserved_bytes_ += c.reserved;
    {
      std::lock_guard<std::mutex> lock(stats_mutex_);
      stats_.buffered_bytes = static_cast<std::int64_t>(reserved_bytes_);
    }
    // The loop answers "100 Continue" itself; httplib must not send a second one.
    if (expect_continue) c.in.erase(expect_begin, expect_size);
    c.head_end = end + 4 - expect_size;
    c.request_end = c.head_end + static_cast<std::size_t>(length);
    if (c.in.size() < c.request_end) {
      c.phase = Conn::Phase::body;
      c.deadline = now + options_.body_timeout;
      if (expect_continue) {
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        std::size_t sent = 0;
        bool broken = false;
        send_pending(fd, kContinue, sent, broken);
      }
    }
  }
  if (c.in.size() >= c.request_end) {
    dispatch(fd);
  } else if (c.peer_closed) {
    close_conn(fd);
  }
}

void HttpLoop::dispatch(int fd) {
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    full = static_cast<int>(queue_.size()) >= options_.queue_length;
    if (!full) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      std::unique_ptr<Conn>& c = conns_[static_cast<std::size_t>(fd)];
      c->phase = Conn::Phase::working;
      queue_.push_back(std::move(c));
    }
  }
  if (!full) {
    ready_.notify_one();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    ++stats_.rejected_queue_full;
  }
  reply_and_close(*conns_[static_cast<std::size_t>(fd)], 503,
                  "all " + std::to_string(options_.threads) + " workers are busy and " +
                      std::to_string(options_.queue_length) +
                      " requests are waiting (--threads, --queue-length); retry shortly",
                  "Retry-After: 1\r\n");
}

void HttpLoop::reply_and_close(Conn& c, int status, const std::string& message, const char* extra_headers) {
  const std::string body = error_body_(status, "metatape: serve: " + message);
  c.out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
          "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
          "\r\nConnection: close\r\n" + extra_headers + "\r\n" + body;
  c.out_sent = 0;
  c.close_after_write = true;
  c.phase = Conn::Phase::writing;
  c.deadline = Clock::now() + options_.write_timeout;
  watch(c.fd, EPOLLOUT, false);
  if (send_pending(c.fd, c.out, c.out_sent, c.broken)) after_write(c.fd);
}

void HttpLoop::after_write(int fd) {
  Conn& c = *conns_[static_cast<std::size_t>(fd)];
  if (c.broken || (c.close_after_write && c.peer_closed)) {
    close_conn(fd);
    return;
  }
  c.out.clear();
  c.out_sent = 0;
  if (c.close_after_write) {
    // Lingering close: stop sending, read and drop what the client still sends for a moment, so the
    // reply is not lost to a reset caused by unread input.
    ::shutdown(fd, SHUT_WR);
    c.in.clear();
    c.phase = Conn::Phase::draining;
    c.deadline = Clock::now() + kDrainFor;
    watch(fd, EPOLLIN, false);
    return;
  }
  c.phase = Conn::Phase::idle;
  c.deadline = Clock::now() + options_.idle_timeout;
  watch(fd, EPOLLIN, false);
  advance(fd);  // a pipelined request may already be buffered
}

void HttpLoop::take_returned() {
  std::vector<std::unique_ptr<Conn>> back;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    back.swap(returned_);
  }
  for (std::unique_ptr<Conn>& c : back) {
    const int fd = c->fd;
    release(*c);
    if (stopping_.load() || epoll_fd_ < 0) {
      ::close(fd);
      std::lock_guard<std::mutex> lock(stats_mutex_);
      --stats_.open_connections;
      continue;
    }
    if (conns_.size() <= static_cast<std::size_t>(fd)) conns_.resize(static_cast<std::size_t>(fd) + 1);
    const bool pending = !c->broken && c->out_sent < c->out.size();
    c->phase = Conn::Phase::writing;
    c->deadline = Clock::now() + options_.write_timeout;
    conns_[static_cast<std::size_t>(fd)] = std::move(c);
    watch(fd, pending ? EPOLLOUT : EPOLLIN, true);
    if (!pending) after_write(fd);
  }
}

void HttpLoop::release(Conn& c) {
  if (c.reserved == 0) return;
  reserved_bytes_ -= std::min(reserved_bytes_, c.reserved);
  c.reserved = 0;
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.buffered_bytes = static_cast<std::int64_t>(reserved_bytes_);
}

void HttpLoop::close_conn(int fd) {
  release(*conns_[static_cast<std::size_t>(fd)]);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  conns_[static_cast<std::size_t>(fd)].reset();
  std::lock_guard<std::mutex> lock(stats_mutex_);
  --stats_.open_connections;
}

void HttpLoop::sweep() {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    if (!conns_[i] || now < conns_[i]->deadline) continue;
    Conn& c = *conns_[i];
    const int fd = static_cast<int>(i);
    switch (c.phase) {
      case Conn::Phase::head:
        if (c.in.empty()) {  // not one byte came: nothing to answer
          close_conn(fd);
          std::lock_guard<std::mutex> lock(stats_mutex_);
          ++stats_.idle_closed;
        } else {
          {
            std::lock_guard<std::mutex> lock(stats_mutex_);
            ++stats_.head_timeouts;
          }
          reply_and_close(c, 408,
                          "the request head (request line and headers) did not arrive within " +
                              seconds_text(options_.head_timeout) + "; send the whole request at once");
        }
        break;
      case Conn::Phase::body: {
        {
          std::lock_guard<std::mutex> lock(stats_mutex_);
          ++stats_.body_timeouts;
        }
        const std::size_t got = c.in.size() - c.head_end, want = c.request_end - c.head_end;
        reply_and_close(c, 408,
                        "the request body did not arrive within " + seconds_text(options_.body_timeout) +
                            " of its head (" + std::to_string(got) + " of " + std::to_string(want) + " bytes came)");
        break;
      }
      case Conn::Phase::idle: {
        close_conn(fd);
        std::lock_guard<std::mutex> lock(stats_mutex_);
        ++stats_.idle_closed;
        break;
      }
      case Conn::Phase::draining:
        close_conn(fd);
        break;
      case Conn::Phase::writing: {
        close_conn(fd);
        std::lock_guard<std::mutex> lock(stats_mutex_);
        ++stats_.write_timeouts;
        break;
      }
      case Conn::Phase::working:
        break;  // not in conns_
    }
  }
}

}  // namespace metatape::serve
