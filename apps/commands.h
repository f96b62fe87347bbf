// Each metatape subcommand lives in apps/<name>_command.cpp and registers itself on the CLI here.
// Exit codes (documented in README.md): 0 success, 1 runtime failure, 2 bad usage or configuration,
// 3 bad input data, 130 interrupted (a checkpoint was saved).
#pragma once

#include <CLI/CLI.hpp>

namespace metatape::apps {

enum ExitCode : int { ok = 0, runtime_failure = 1, bad_usage = 2, bad_data = 3, interrupted = 130 };

void register_sinusoid(CLI::App& app);

}  // namespace metatape::apps
