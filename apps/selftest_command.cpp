// metatape selftest noise: the control that would have caught false skill verdicts.
//
// Runs the main job with short settings on simulator data in two regimes, over several seeds:
//   noise    a random walk: i.i.d. Gaussian log returns (no regimes, no GARCH, no jumps, one exchange
//            with no lag and no spread), so no feature carries information about any label beyond the
//            class frequencies. Labels are normalised by a long trailing volatility window
//            (kNoiseVolWindow bars): with the default 20 bars the estimation error of the trailing
//            volatility itself predicts how often a vol-scaled threshold is crossed, a real (if
//            untradeable) signal that would make "no skill" the wrong expectation.
//   control  the same market whose returns are AR(1) with phi = kControlPhi: a real, learnable
//            signal in every direction and regime label.
// Passes (exit 0) only when no learner gets a "skill" verdict on noise in any family and seed, at
// least three seeds were run, and at least one learner gets "skill" on the control. Otherwise exit 1.
// Short settings: 6 learners x 2 families, 300 meta-steps, 1-bar label horizon (the AR(1) signal is
// strongest one bar ahead), 5-shot, 200 test episodes; about 15 s per run on one core.
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "apps/commands.h"
#include "eval/report.h"

namespace metatape::apps {
namespace {

constexpr std::int64_t kNoiseVolWindow = 500;
constexpr double kControlPhi = 0.5;
constexpr int kMinSeeds = 3;

struct SelftestOptions {
  int seeds = kMinSeeds;
  std::int64_t vol_window = kNoiseVolWindow;
  std::vector<std::string> set;
  std::string out;
  bool verbose = false;
};

// The short settings; the user's --set overrides come after them.
const std::vector<std::string>& short_settings() {
  static const std::vector<std::string> s = {
      "learners=[maml,fomaml,meta-sgd,anil,reptile,protonet]",
      "tasks.families=[price_direction,market_regime]",
      "data.simulator.assets=4",
      "data.simulator.exchanges=1",
      "data.simulator.bars=3000",
      "tasks.horizon=1",
      "training.meta_steps=300",
      "training.diagnose_every=1000",
      "evaluation.shots=[5]",
      "evaluation.steps=[1,5]",
      "evaluation.episodes=200",
      "evaluation.selection_episodes=40",
      "evaluation.bootstrap_resamples=500",
  };
  return s;
}

eval::RunConfig regime_config(const SelftestOptions& o, bool control, int seed) {
  std::vector<std::string> overrides = short_settings();
  overrides.push_back("seed=" + std::to_string(seed));
  overrides.push_back("data.simulator.seed=" + std::to_string(1000 + seed));
  for (const auto& s : o.set) overrides.push_back(s);
  eval::RunConfig c = eval::load_run_config("", overrides);
  tasks::SimulatorConfig& sim = c.data.simulator;
  for (int r = 0; r < tasks::kRegimeCount; ++r) {
    sim.drift[r] = 0.0;
    sim.vol_scale[r] = 1.0;
  }
  sim.garch_alpha = 0.0;
  sim.garch_beta = 0.0;
  sim.jump_probability = 0.0;
  sim.spread_vol = 0.0;
  sim.lag_fraction.assign(static_cast<std::size_t>(sim.exchanges), 0.0);
  sim.return_autocorrelation = control ? kControlPhi : 0.0;
  c.distribution.family.trailing_vol_window = o.vol_window;
  c.benchmark.out_dir.clear();  // nothing is trained to disk
  c.benchmark.resume = false;
  return c;
}

void selftest_noise(const SelftestOptions& o) {
  if (o.seeds < 1) throw eval::ConfigError("selftest: --seeds must be >= 1, got " + std::to_string(o.seeds));
  if (o.vol_window < 2) {
    throw eval::ConfigError("selftest: --vol-window must be >= 2 bars, got " + std::to_string(o.vol_window));
  }
  SigintScope sigint;
  int false_skill = 0, noise_verdicts = 0, detected = 0, control_verdicts = 0;
  for (const bool control : {false, true}) {
    for (int seed = 1; seed <= o.seeds; ++seed) {
      eval::RunConfig config = regime_config(o, control, seed);
      std::string description;
      auto sources = eval::build_sources(config, &description);
      eval::BenchmarkResult result = eval::run_benchmark(config.benchmark, sources, nullptr, &interrupt_requested());
      if (result.interrupted) throw CommandExit{interrupted};
      result.data_description =
          std::string(control ? "control (AR(1) returns, phi 0.5), " : "noise (i.i.d. returns), ") + description;
      const char* regime = control ? "control" : "noise";
      if (!o.out.empty()) {
        eval::write_report(result, o.out + "/" + regime + "-seed" + std::to_string(seed));
      }
      std::ostringstream line;
      line << "selftest " << regime << " seed " << seed << ":";
      std::map<std::string, std::pair<int, int>> per_family;  // skill, verdicts
      std::map<std::string, std::string> strongest;
      for (const auto& v : result.verdicts) {
        auto& [skill, total] = per_family[v.family];
        skill += v.skill;
        ++total;
        strongest[v.family] = v.strongest_baseline;
        (control ? control_verdicts : noise_verdicts) += 1;
        (control ? detected : false_skill) += v.skill;
      }
      for (const auto& [family, counts] : per_family) {
        line << " " << family << " " << counts.first << "/" << counts.second << " skill (vs " << strongest[family]
             << ");";
      }
      line << " " << static_cast<int>(result.seconds) << " s";
      std::cout << line.str() << '\n' << std::flush;
      if (o.verbose) std::cout << eval::verdicts_markdown(result) << '\n';
    }
  }
  std::cout << "noise self-test: " << false_skill << " false skill verdicts in " << noise_verdicts << " (noise), "
            << detected << " of " << control_verdicts << " learners detected (control)\n";
  std::string why;
  if (false_skill > 0) why += " a learner was declared skilled on pure noise;";
  if (detected == 0) why += " no learner was declared skilled on the planted signal;";
  if (o.seeds < kMinSeeds) why += " fewer than " + std::to_string(kMinSeeds) + " seeds were run;";
  if (!why.empty()) {
    std::fprintf(stderr, "metatape: noise self-test FAILED:%s the verdicts cannot be trusted\n", why.c_str());
    throw CommandExit{runtime_failure};
  }
  std::cout << "noise self-test passed\n";
}

}  // namespace

void register_selftest(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("selftest", "self-tests of the evaluation itself");
  cmd->require_subcommand(1);
  auto opts = std::make_shared<SelftestOptions>();
  CLI::App* noise =
      cmd->add_subcommand("noise",
                          "run the main job (short settings) on a random walk and on a planted AR(1) signal; pass only "
                          "when no learner is declared skilled on noise and at least one is on the signal");
  noise->add_option("--seeds", opts->seeds, "seeds per regime (at least 3 to pass)");
  noise->add_option("-s,--set", opts->set, "override a config key after the short settings (repeatable)");
  noise->add_option("-o,--out", opts->out, "write each run's report under this directory");
  noise->add_flag("-v,--verbose", opts->verbose, "print each run's verdict tables");
  noise->add_option("--vol-window", opts->vol_window,
                    "trailing volatility window of the labels in bars (default 500; see docs/evaluation.md)");
  noise->callback([opts] { selftest_noise(*opts); });
}

}  // namespace metatape::apps
