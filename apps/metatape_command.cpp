// The top-level metatape command: registers every subcommand, parses, and maps errors to exit codes.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "apps/commands.h"
#include "eval/run_config.h"
#include "kernels/error.h"

namespace metatape::apps {
namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_sigint(int) {
  if (g_interrupt.load()) std::_Exit(interrupted);
  g_interrupt.store(true);
}

}  // namespace

std::atomic<bool>& interrupt_requested() { return g_interrupt; }

SigintScope::SigintScope() {
  g_interrupt.store(false);
  previous_ = std::signal(SIGINT, on_sigint);
}

SigintScope::~SigintScope() { std::signal(SIGINT, previous_ == SIG_ERR ? SIG_DFL : previous_); }

int run_cli(const std::vector<std::string>& args) {
  CLI::App app{"metatape: few-shot meta-learning on market data, with exact second-order gradients"};
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration, 3 bad input data, "
             "130 interrupted (checkpoint saved). See docs/cli.md.");
  register_run(app);
  register_train(app);
  register_eval(app);
  register_adapt(app);
  register_data(app);
  register_simulate(app);
  register_sinusoid(app);
  register_selftest(app);
#ifdef METATAPE_WITH_SERVE
  register_serve(app);
#endif
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them in reverse
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? ok : bad_usage;
  } catch (const CommandExit& e) {
    return e.code;
  } catch (const eval::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return bad_usage;
  } catch (const eval::DataError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return bad_data;
  } catch (const metatape::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return runtime_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metatape: unexpected error: %s\n", e.what());
    return runtime_failure;
  }
  return ok;
}

}  // namespace metatape::apps
