// The connection side of `metatape serve`: one I/O thread (epoll) owns every socket, a fixed pool of
// workers runs complete requests. Slow clients cannot hold a worker: the I/O thread buffers a
// request's head and body itself and hands it to a worker only when all of it has arrived, and the
// worker writes its reply into memory, which the I/O thread sends. So a worker never waits on a
// socket, and `threads` workers serve `threads` requests at a time however many connections dribble.
//
// Limits (each refusal is a JSON body {"error": ...} built by the ErrorBody callback):
//   head_timeout   a new connection must deliver its request line and headers within this time
//                  (a kept-alive one: within this time of its next request's first byte); else 408,
//                  or a silent close when not one byte came
//   body_timeout   the body (Content-Length bytes) must arrive within this time of the head; else 408
//   idle_timeout   a kept-alive connection waits this long for its next request, then is closed
//   write_timeout  a reply must be taken by the client within this time, else the connection closes
//   max_head_bytes request line + headers larger than this: 431
//   max_body_bytes a Content-Length larger than this: 413 before the body is read
//   max_buffered_bytes  bodies being received or run, all connections together; a head whose
//                  Content-Length would pass it is answered 503 (memory stays bounded however many
//                  clients send large bodies slowly)
//   Transfer-Encoding on a request (chunked bodies): 411, send a Content-Length
//   max_connections open connections held at once; one more is answered 503 and closed
//   queue_length   complete requests waiting for a free worker; one more is answered 503
//   backlog        the listen(2) backlog (the kernel caps it at net.core.somaxconn)
//   keep_alive_max requests served on one connection before it is closed
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Stream;
}

namespace metatape::serve {

struct LoopOptions {
  int threads = 4;
  int max_connections = 512;
  int queue_length = 256;
  int backlog = 1024;
  int keep_alive_max = 100;
  std::chrono::milliseconds head_timeout{5000};
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds idle_timeout{5000};
  std::chrono::milliseconds write_timeout{10000};
  std::size_t max_head_bytes = 32 << 10;
  std::size_t max_body_bytes = 4 << 20;
  std::size_t max_buffered_bytes = std::size_t(256) << 20;
  // Starts one thread (workers and the I/O thread of start()); tests replace it to simulate failure.
  std::function<std::thread(std::function<void()>)> spawn;
};

// Counters for /metrics (all monotonic except open_connections).
struct LoopStats {
  std::int64_t open_connections = 0;
  std::int64_t queued = 0;          // complete requests waiting for a worker now
  std::int64_t buffered_bytes = 0;  // request bodies announced and not yet run, now
  std::int64_t accepted = 0;
  std::int64_t rejected_busy = 0;        // over max_connections
  std::int64_t rejected_queue_full = 0;  // over queue_length
  std::int64_t head_timeouts = 0;
  std::int64_t body_timeouts = 0;
  std::int64_t write_timeouts = 0;
  std::int64_t idle_closed = 0;
  std::int64_t too_large = 0;        // 413 and 431
  std::int64_t rejected_memory = 0;  // over max_buffered_bytes
};

class HttpLoop {
 public:
  // Runs one complete request on a worker (httplib's request processing); the stream reads the
  // buffered request and collects the reply. Returns false when the connection must close.
  using RequestHandler = std::function<bool(httplib::Stream&, bool close_connection, bool& connection_closed)>;
  // The body of a reply the loop makes itself (408, 411, 413, 431, 503, 400).
  using ErrorBody = std::function<std::string(int status, const std::string& message)>;

  HttpLoop(LoopOptions options, RequestHandler handler, ErrorBody error_body);
  ~HttpLoop();
  HttpLoop(const HttpLoop&) = delete;
  HttpLoop& operator=(const HttpLoop&) = delete;

  // Binds and listens on host:port (0: any free port), starts the workers; returns the port. Throws
  // Error naming the address or the thread that could not be started.
  int bind(const std::string& host, int port);
  // The I/O loop, until stop(); then closes every connection and joins the workers.
  void run();
  // From any thread; run() returns soon after.
  void stop();

  LoopStats stats() const;

 private:
  struct Conn;
  void start_workers();
  void join_workers();
  void worker();
  bool accept_all();  // false: out of descriptors or memory
  void on_event(int fd, std::uint32_t events);
  void read_from(Conn& c);
  void advance(int fd);
  void dispatch(int fd);
  void reply_and_close(Conn& c, int status, const std::string& message, const char* extra_headers = "");
  void flush(Conn& c);
  void after_write(int fd);
  void close_conn(int fd);
  void sweep();
  void take_returned();
  void watch(int fd, std::uint32_t events, bool add);

  LoopOptions options_;
  RequestHandler handler_;
  ErrorBody error_body_;
  int listen_fd_ = -1, epoll_fd_ = -1, wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  bool ran_ = false;

  // Owned by the I/O thread.
  std::vector<std::unique_ptr<Conn>> conns_;  // indexed by fd
  std::size_t reserved_bytes_ = 0;            // bodies announced and not yet run, all connections
  void release(Conn& c);

  // Complete requests waiting for a worker, and connections the workers hand back.
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::unique_ptr<Conn>> queue_;
  std::vector<std::unique_ptr<Conn>> returned_;
  bool workers_done_ = false;
  std::vector<std::thread> workers_;

  mutable std::mutex stats_mutex_;
  LoopStats stats_;
};

}  // namespace metatape::serve
