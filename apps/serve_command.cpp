// metatape serve: the HTTP adaptation server (serve/server.h) over one checkpoint.
//   metatape serve --checkpoint PATH [--host 127.0.0.1] [--port 8080] [--threads N]
//                  [--token-env VAR] [--max-body-kb 4096] [--max-support-rows 10000]
//                  [--max-query-rows 10000] [--max-steps 100] [--cache-mb 64] [--ttl-s 300]
//                  [--task regression|classification|portfolio] [--num-classes 0]
//                  [--max-connections 512] [--queue-length 256] [--backlog 1024]
//                  [--head-timeout-s 5] [--body-timeout-s 30] [--idle-timeout-s 5]
//                  [--max-seconds 0]
// Limits: docs/serve.md. Ctrl-C (or --max-seconds) stops it cleanly. Exit codes: 0 stopped, 2 bad
// options (an option outside its range is named with its value and limit), 3 the checkpoint cannot
// be loaded, 1 anything else (the port is in use, a worker thread cannot be started).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "apps/commands.h"
#include "capi/inference_model.h"
#include "serve/server.h"

namespace metatape::apps {
namespace {

struct ServeArgs {
  std::string checkpoint, host = "127.0.0.1", token_env, task;
  long long port = 8080, threads = 0, max_steps = 100;
  long long max_body_kb = 4096, max_support_rows = 10000, max_query_rows = 10000, num_classes = 0;
  long long max_connections = 512, queue_length = 256, backlog = 1024;
  double cache_mb = 64, ttl_s = 300, max_seconds = 0;
  double head_timeout_s = 5, body_timeout_s = 30, idle_timeout_s = 5;
};

std::chrono::milliseconds seconds_option(const char* flag, double seconds) {
  if (!(seconds > 0) || seconds > 86400) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", seconds);
    throw eval::ConfigError("serve: " + std::string(flag) + " " + text + " is outside (0, 86400] seconds");
  }
  return std::chrono::milliseconds(std::max<long long>(1, static_cast<long long>(seconds * 1000)));
}

int int_option(const char* flag, long long value, long long lo, long long hi, const std::string& note = "") {
  if (value < lo || value > hi) {
    throw eval::ConfigError("serve: " + std::string(flag) + " " + std::to_string(value) + " is outside [" +
                            std::to_string(lo) + ", " + std::to_string(hi) + "]" + note);
  }
  return static_cast<int>(value);
}

void serve(const ServeArgs& a) {
  using Limits = serve::ServerOptions;
  serve::ServerOptions o;
  o.host = a.host;
  o.port = int_option("--port", a.port, 0, 65535);
  o.threads = int_option("--threads", a.threads, 0, Limits::kMaxThreads,
                         " (0: the CPU count; the limit keeps the pool's threads and stacks bounded)");
  if (o.threads == 0) {
    o.threads = static_cast<int>(
        std::clamp(std::thread::hardware_concurrency(), 2u, static_cast<unsigned>(Limits::kMaxThreads)));
  }
  o.max_connections = int_option("--max-connections", a.max_connections, 1, Limits::kMaxConnections);
  o.queue_length = int_option("--queue-length", a.queue_length, 1, Limits::kMaxQueueLength);
  o.backlog = int_option("--backlog", a.backlog, 1, Limits::kMaxBacklog);
  o.head_timeout = seconds_option("--head-timeout-s", a.head_timeout_s);
  o.body_timeout = seconds_option("--body-timeout-s", a.body_timeout_s);
  o.idle_timeout = seconds_option("--idle-timeout-s", a.idle_timeout_s);
  o.max_steps = int_option("--max-steps", a.max_steps, 0, capi::InferenceModel::kMaxSteps);
  o.max_body_bytes = static_cast<std::size_t>(a.max_body_kb) * 1024;
  o.max_support_rows = a.max_support_rows;
  o.max_query_rows = a.max_query_rows;
  o.cache.max_bytes = static_cast<std::int64_t>(a.cache_mb * 1024 * 1024);
  o.cache.ttl = std::chrono::milliseconds(static_cast<std::int64_t>(a.ttl_s * 1000));
  if (o.cache.max_bytes <= 0 || o.cache.ttl.count() <= 0) {
    throw eval::ConfigError("serve: --cache-mb and --ttl-s must be positive");
  }
  if (!a.token_env.empty()) {
    const char* token = std::getenv(a.token_env.c_str());
    if (!token || !*token) {
      throw eval::ConfigError("serve: --token-env " + a.token_env + " names an unset or empty variable");
    }
    o.token = token;
  }
  std::shared_ptr<capi::InferenceModel> model;
  try {
    model = capi::InferenceModel::load(a.checkpoint);
  } catch (const capi::CheckpointError& e) {
    throw eval::DataError(e.what());
  }
  if (!a.task.empty()) {
    const tasks::TaskKind kind =
        a.task == "classification" ? tasks::TaskKind::classification
        : a.task == "portfolio"    ? tasks::TaskKind::portfolio
        : a.task == "regression"
            ? tasks::TaskKind::regression
            : throw eval::ConfigError("serve: --task must be regression, classification or portfolio, got " + a.task);
    try {
      model->set_task(kind, a.num_classes);
    } catch (const Error& e) {
      throw eval::ConfigError(e.what());
    }
  }
  std::unique_ptr<serve::Server> made;
  try {
    made = std::make_unique<serve::Server>(model, o);
  } catch (const serve::OptionError& e) {
    const std::string what = e.what(), prefix = "metatape: ";
    throw eval::ConfigError(what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what);
  }
  serve::Server& server = *made;
  const int port = server.bind();
  std::fprintf(stderr,
               "metatape serve: %s (%s), listening on http://%s:%d with %d workers, at most %d connections, "
               "%d queued requests%s\n",
               model->learner_name().c_str(), model->model_description().c_str(), o.host.c_str(), port, o.threads,
               o.max_connections, o.queue_length, o.token.empty() ? "" : ", bearer token required");
  SigintScope sigint;
  std::thread watcher([&] {
    const auto start = std::chrono::steady_clock::now();
    while (!interrupt_requested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (a.max_seconds > 0 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= a.max_seconds) {
        break;
      }
    }
    server.stop();
  });
  server.run();
  interrupt_requested() = true;  // ends the watcher when run() returned on its own
  watcher.join();
  interrupt_requested() = false;
  std::fprintf(stderr, "metatape serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "serve adaptation over HTTP: POST /v1/adapt, POST /v1/predict, GET /healthz, GET /metrics");
  cmd->add_option("--checkpoint", args->checkpoint, "checkpoint written by `metatape train` or meta::save_learner")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--host", args->host, "address to bind (default 127.0.0.1: loopback only)");
  cmd->add_option("--port", args->port, "port (0: any free port, printed at start)");
  cmd->add_option("--threads", args->threads,
                  "worker threads running requests, at most " + std::to_string(serve::ServerOptions::kMaxThreads) +
                      " (default 0: the CPU count, at least 2)");
  cmd->add_option("--token-env", args->token_env,
                  "environment variable holding a bearer token required on /v1/* and /metrics");
  cmd->add_option("--max-body-kb", args->max_body_kb, "largest request body in KiB, else 413 (default 4096)")
      ->check(CLI::Range(1LL, 1LL << 22));
  cmd->add_option("--max-support-rows", args->max_support_rows, "largest support set")
      ->check(CLI::Range(1LL, 1LL << 30));
  cmd->add_option("--max-query-rows", args->max_query_rows, "largest predict batch")->check(CLI::Range(1LL, 1LL << 30));
  cmd->add_option(
      "--max-steps", args->max_steps,
      "largest inner-step count a request may ask for, at most " + std::to_string(capi::InferenceModel::kMaxSteps));
  cmd->add_option("--cache-mb", args->cache_mb, "memory cap of the adapted-model LRU in MiB");
  cmd->add_option("--ttl-s", args->ttl_s, "seconds an adapted model lives after its last use");
  cmd->add_option("--task", args->task,
                  "task kind when the checkpoint records none (regression, classification, portfolio); a kind that "
                  "contradicts the recorded one is refused");
  cmd->add_option("--num-classes", args->num_classes, "classes for --task classification (0: from the model)");
  cmd->add_option("--max-connections", args->max_connections,
                  "open connections held at once, at most " + std::to_string(serve::ServerOptions::kMaxConnections) +
                      "; one more is answered 503 (default 512)");
  cmd->add_option("--queue-length", args->queue_length,
                  "complete requests waiting for a free worker; one more is answered 503 (default 256)");
  cmd->add_option("--backlog", args->backlog,
                  "listen backlog, capped by the kernel's net.core.somaxconn (default 1024)");
  cmd->add_option("--head-timeout-s", args->head_timeout_s,
                  "seconds a client has to send the request line and headers, else 408 (default 5)");
  cmd->add_option("--body-timeout-s", args->body_timeout_s,
                  "seconds a client has to send the body after its headers, else 408 (default 30)");
  cmd->add_option("--idle-timeout-s", args->idle_timeout_s,
                  "seconds a kept-alive connection may wait for its next request (default 5)");
  cmd->add_option("--max-seconds", args->max_seconds, "stop after this many seconds (0: run until Ctrl-C)");
  cmd->footer(
      "Limits: a worker only ever runs a request whose head and body have fully arrived (one I/O thread\n"
      "holds the connections), so slow clients cannot tie up the workers. Bodies need a Content-Length\n"
      "(chunked bodies: 411); request line + headers at most 32 KiB (431); bodies at most --max-body-kb\n"
      "(413); a reply the client does not take within 10 s closes the connection; 100 requests per\n"
      "connection. Non-finite results are answered 422. See docs/serve.md.");
  cmd->callback([args] { serve(*args); });
}

}  // namespace metatape::apps
