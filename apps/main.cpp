#include <cstdio>
#include <exception>

#include "apps/commands.h"
#include "kernels/error.h"

int main(int argc, char** argv) {
  CLI::App app{"metatape: few-shot meta-learning on market data, with exact second-order gradients"};
  app.require_subcommand(1);
  metatape::apps::register_sinusoid(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? metatape::apps::ok : metatape::apps::bad_usage;
  } catch (const metatape::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return metatape::apps::runtime_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metatape: unexpected error: %s\n", e.what());
    return metatape::apps::runtime_failure;
  }
  return metatape::apps::ok;
}
