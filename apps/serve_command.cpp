// metatape serve: the HTTP adaptation server (serve/server.h) over one checkpoint.
//   metatape serve --checkpoint PATH [--host 127.0.0.1] [--port 8080] [--threads N]
//                  [--token-env VAR] [--max-body-kb 4096] [--max-support-rows 10000]
//                  [--max-query-rows 10000] [--max-steps 100] [--cache-mb 64] [--ttl-s 300]
//                  [--task regression|classification|portfolio] [--num-classes 0]
//                  [--max-seconds 0]
// Ctrl-C (or --max-seconds) stops it cleanly. Exit codes: 0 stopped, 2 bad options, 3 the checkpoint
// cannot be loaded, 1 anything else (e.g. the port is in use).
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
  int port = 8080, threads = 0, max_steps = 100;
  long long max_body_kb = 4096, max_support_rows = 10000, max_query_rows = 10000, num_classes = 0;
  double cache_mb = 64, ttl_s = 300, max_seconds = 0;
};

void serve(const ServeArgs& a) {
  serve::ServerOptions o;
  o.host = a.host;
  o.port = a.port;
  o.threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  o.max_body_bytes = static_cast<std::size_t>(a.max_body_kb) * 1024;
  o.max_support_rows = a.max_support_rows;
  o.max_query_rows = a.max_query_rows;
  o.max_steps = a.max_steps;
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
    const tasks::TaskKind kind = a.task == "classification" ? tasks::TaskKind::classification
                                 : a.task == "portfolio"    ? tasks::TaskKind::portfolio
                                 : a.task == "regression"   ? tasks::TaskKind::regression
                                     : throw eval::ConfigError("serve: --task must be regression, classification or portfolio, got " + a.task);
    try {
      model->set_task(kind, a.num_classes);
    } catch (const Error& e) {
      throw eval::ConfigError(e.what());
    }
  }
  serve::Server server(model, o);
  const int port = server.bind();
  std::fprintf(stderr, "metatape serve: %s (%s), listening on http://%s:%d with %d workers%s\n",
               model->learner_name().c_str(), model->model_description().c_str(), o.host.c_str(), port,
               o.threads, o.token.empty() ? "" : ", bearer token required");
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
  cmd->add_option("--port", args->port, "port (0: any free port, printed at start)")->check(CLI::Range(0, 65535));
  cmd->add_option("--threads", args->threads, "worker threads (default: the CPU count, at least 2)")->check(CLI::Range(0, 1024));
  cmd->add_option("--token-env", args->token_env, "environment variable holding a bearer token required on /v1/* and /metrics");
  cmd->add_option("--max-body-kb", args->max_body_kb, "largest request body in KiB")->check(CLI::Range(1LL, 1LL << 22));
  cmd->add_option("--max-support-rows", args->max_support_rows, "largest support set")->check(CLI::Range(1LL, 1LL << 30));
  cmd->add_option("--max-query-rows", args->max_query_rows, "largest predict batch")->check(CLI::Range(1LL, 1LL << 30));
  cmd->add_option("--max-steps", args->max_steps, "largest inner-step count a request may ask for")
      ->check(CLI::Range(0, capi::InferenceModel::kMaxSteps));
  cmd->add_option("--cache-mb", args->cache_mb, "memory cap of the adapted-model LRU in MiB");
  cmd->add_option("--ttl-s", args->ttl_s, "seconds an adapted model lives after its last use");
  cmd->add_option("--task", args->task, "override the checkpoint's task kind: regression, classification, portfolio");
  cmd->add_option("--num-classes", args->num_classes, "classes for --task classification (0: from the model)");
  cmd->add_option("--max-seconds", args->max_seconds, "stop after this many seconds (0: run until Ctrl-C)");
  cmd->callback([args] { serve(*args); });
}

}  // namespace metatape::apps
