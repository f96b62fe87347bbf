// The top-level metatape command: registers every subcommand, parses, and maps errors to exit codes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>

#include "apps/commands.h"
#include "dist/communicator.h"
#include "eval/run_config.h"
#include "kernels/error.h"

namespace metatape::apps {
namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_sigint(int) {
  if (g_interrupt.load()) std::_Exit(interrupted);
  g_interrupt.store(true);
}

// CLI11 says "The following argument was not expected: frobnicate" for an unknown subcommand; this
// names it as a command and lists the ones there are. Returns the message, or "" when all is well.
std::string unknown_command(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* level = &app;
  std::string path = "metatape";
  for (const std::string& arg : args) {
    if (arg.empty() || arg[0] == '-') return "";
    const auto subs = level->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return "";
    CLI::App* next = nullptr;
    for (CLI::App* sub : subs) {
      if (sub->check_name(arg)) next = sub;
    }
    if (next == nullptr) {
      const auto positionals = level->get_options([](const CLI::Option* o) { return o->get_positional(); });
      if (!positionals.empty()) return "";
      std::string names;
      for (CLI::App* sub : subs) names += (names.empty() ? "" : ", ") + sub->get_name();
      return "metatape: unknown command '" + arg + "'" + (level == &app ? "" : " for " + path) +
             "; the commands are: " + names + " (see " + path + " --help)";
    }
    level = next;
    path += " " + next->get_name();
  }
  return "";
}

}  // namespace

std::atomic<bool>& interrupt_requested() { return g_interrupt; }

std::string out_of_memory_message() {
  return "metatape: out of memory: the command asked for more memory than this machine has. Lower what the "
         "configuration sizes (training.hidden, training.meta_batch, training.inner_steps, evaluation.episodes, "
         "evaluation.steps, data.simulator.bars, the market files), or lower the limits that bound them: "
         "limits.max_parameters, limits.max_rows, limits.max_inner_steps_x_episodes, limits.max_bars "
         "(docs/cli.md, \"Resource limits\")";
}

SigintScope::SigintScope() {
  g_interrupt.store(false);
  previous_ = std::signal(SIGINT, on_sigint);
  // mpirun ends its processes on SIGINT but forwards SIGUSR1 to them: the way to stop a data-parallel
  // job with a checkpoint (docs/scale.md, "Faults").
  previous_usr1_ = std::signal(SIGUSR1, on_sigint);
}

SigintScope::~SigintScope() {
  std::signal(SIGINT, previous_ == SIG_ERR ? SIG_DFL : previous_);
  std::signal(SIGUSR1, previous_usr1_ == SIG_ERR ? SIG_DFL : previous_usr1_);
}

namespace {

// An error of a job of several processes names the process it happened on.
void print_error(const char* message) {
  const dist::Communicator& comm = dist::world();
  if (comm.size() > 1) {
    std::fprintf(stderr, "[rank %d of %d] %s\n", comm.rank(), comm.size(), message);
  } else {
    std::fprintf(stderr, "%s\n", message);
  }
}

}  // namespace

int run_cli(const std::vector<std::string>& args) {
  CLI::App app{"metatape: few-shot meta-learning on market data, with exact second-order gradients", "metatape"};
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration, 3 bad input data, "
      "130 interrupted (checkpoint saved). See docs/cli.md.");
  register_run(app);
  register_train(app);
  register_eval(app);
  register_adapt(app);
  register_data(app);
  register_simulate(app);
  register_sinusoid(app);
  register_omniglot(app);
  register_selftest(app);
#ifdef METATAPE_WITH_SERVE
  register_serve(app);
#endif
  if (const std::string message = unknown_command(app, args); !message.empty()) {
    std::fprintf(stderr, "%s\n", message.c_str());
    return bad_usage;
  }
  // Under mpirun only the commands that split their work run (dist/communicator.h); any other would run
  // whole on every process and write the same files.
  if (dist::world().size() > 1) {
    const auto command = std::find_if(args.begin(), args.end(), [](const std::string& a) { return a[0] != '-'; });
    const std::string name = command == args.end() ? std::string() : *command;
    if (name != "run" && name != "train" && name != "bench" && name != "eval") {
      print_error(("metatape: `" + name + "` does not run data-parallel; under mpirun use run, train, bench or eval, "
                   "or start it without mpirun").c_str());
      return bad_usage;
    }
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them in reverse
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? ok : bad_usage;
  } catch (const CommandExit& e) {
    return e.code;
  } catch (const eval::ConfigError& e) {
    print_error(e.what());
    return bad_usage;
  } catch (const eval::DataError& e) {
    print_error(e.what());
    return bad_data;
  } catch (const metatape::Error& e) {
    print_error(e.what());
    return runtime_failure;
  } catch (const std::bad_alloc&) {
    print_error(out_of_memory_message().c_str());
    return runtime_failure;
  } catch (const std::exception& e) {
    print_error((std::string("metatape: unexpected error: ") + e.what()).c_str());
    return runtime_failure;
  }
  return ok;
}

}  // namespace metatape::apps
