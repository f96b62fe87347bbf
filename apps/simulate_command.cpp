// metatape simulate: write synthetic market data from the built-in simulator as CSV files.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "apps/commands.h"
#include "tasks/loaders.h"
#include "tasks/simulator.h"

namespace metatape::apps {
namespace {

struct SimulateArgs {
  std::string out;
  long long seed = 7, bars = 3000;
  int assets = 4, exchanges = 2;
  std::string interval = "1h";
};

void simulate(const SimulateArgs& a) {
  tasks::SimulatorConfig c;
  c.seed = static_cast<std::uint64_t>(a.seed);
  c.bars = a.bars;
  c.assets = a.assets;
  c.exchanges = a.exchanges;
  c.interval_ms = tasks::interval_to_ms(a.interval);
  if (c.interval_ms <= 0)
    throw eval::ConfigError("--interval '" + a.interval + "' is not an interval (1m, 5m, 1h, 1d, ...)");
  tasks::SimulatedMarket sim;
  try {
    sim = tasks::simulate_market(c);
  } catch (const Error& e) {
    throw eval::ConfigError(e.what());
  }
  std::vector<std::string> paths;
  try {
    paths = tasks::write_market_csv(sim.market, a.out);
  } catch (const Error& e) {
    throw eval::DataError(e.what());
  }
  const std::string regimes = (std::filesystem::path(a.out) / "regimes.csv").string();
  std::ofstream out(regimes);
  if (!out) throw eval::DataError("metatape: simulate: cannot write " + regimes);
  out << "time_ms,regime\n";
  for (std::size_t i = 0; i < sim.regimes.size(); ++i) {
    out << sim.market.time_ms[i] << ',' << tasks::regime_name(sim.regimes[i]) << '\n';
  }
  for (const auto& p : paths) std::cout << p << "\n";
  std::cout << regimes << "\n"
            << "wrote " << paths.size() << " series of " << c.bars << " bars (seed " << c.seed << ")\n";
}

}  // namespace

void register_simulate(CLI::App& app) {
  auto a = std::make_shared<SimulateArgs>();
  CLI::App* cmd =
      app.add_subcommand("simulate",
                         "write synthetic market data (regime-switching GARCH with jumps, several exchanges with "
                         "lead-lag and spreads) as one CSV per series plus regimes.csv");
  cmd->add_option("-o,--out", a->out, "output directory")->required();
  cmd->add_option("--seed", a->seed, "simulator seed");
  cmd->add_option("--bars", a->bars, "bars per series")->check(positive());
  cmd->add_option("--assets", a->assets, "number of assets")->check(positive());
  cmd->add_option("--exchanges", a->exchanges, "exchanges quoting each asset")->check(positive());
  cmd->add_option("--interval", a->interval, "bar interval (1m, 5m, 1h, 1d, ...)");
  cmd->callback([a] { simulate(*a); });
}

}  // namespace metatape::apps
