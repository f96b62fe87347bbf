#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>

#include "eval/progress.h"
#include "eval/run_config.h"

using namespace metatape;
using namespace metatape::eval;

TEST_CASE("run config: defaults, YAML, overrides and clear errors") {
  const RunConfig d = parse_run_config("");
  CHECK(d.benchmark.learners.size() == 8);
  CHECK(d.benchmark.meta_steps == 1000);
  CHECK(d.benchmark.episodes == 600);
  CHECK(d.benchmark.shots == std::vector<int>{1, 5, 10});
  CHECK(d.distribution.families == std::vector<std::string>{"price_direction", "market_regime"});
  CHECK(d.data.source == "simulator");

  const RunConfig c = parse_run_config(
      "seed: 9\nlearners: [maml]\ntraining:\n  hidden: [32]\n  inner_lr: 0.2\nevaluation:\n  fee_rate: 0.002\n",
      {"training.meta_steps=7", "evaluation.shots=[2, 3]", "data.simulator.bars=1234"});
  CHECK(c.benchmark.seed == 9);
  CHECK(c.benchmark.learners == std::vector<std::string>{"maml"});
  CHECK(c.benchmark.hidden == std::vector<std::int64_t>{32});
  CHECK(c.benchmark.learner_options.maml.inner_lr == doctest::Approx(0.2));
  CHECK(c.benchmark.learner_options.meta_sgd.alpha_init == doctest::Approx(0.2));
  CHECK(c.benchmark.trading.fee_rate == doctest::Approx(0.002));
  CHECK(c.benchmark.meta_steps == 7);
  CHECK(c.benchmark.shots == std::vector<int>{2, 3});
  CHECK(c.data.simulator.bars == 1234);

  CHECK_THROWS_WITH_AS(parse_run_config("trainig:\n  meta_steps: 3\n"), doctest::Contains("unknown key 'trainig'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("training:\n  meta_stepz: 3\n"), doctest::Contains("training.meta_stepz"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("training:\n  meta_steps: lots\n"),
                       doctest::Contains("'training.meta_steps' has an invalid value"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("a: [1\n"), doctest::Contains("not valid YAML"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"oops"}), doctest::Contains("section.key=value"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("data:\n  source: files\n"), doctest::Contains("data.files is empty"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("learners: [maml, alchemy]\n"), doctest::Contains("unknown learner 'alchemy'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("tasks:\n  families: [tarot]\n"), doctest::Contains("unknown family 'tarot'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(load_run_config("/no/such/config.yaml"), doctest::Contains("cannot read the config file"),
                       ConfigError);
}

namespace {

std::string refusal(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    (void)parse_run_config(yaml, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

// Each of these hung, ran out of memory or was silently accepted before: now refused at config time,
// naming the key, the value and (for resource limits) the limit key to raise.
TEST_CASE("run config: values that hang or exhaust memory are refused with the limit key") {
  struct Case {
    std::string set;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"evaluation.steps=[1000000000]",
       {"evaluation.steps [1000000000]", "limits.max_inner_steps_x_episodes (1000000)"}},
      {"training.inner_steps=1e9",
       {"training.inner_steps / reptile_steps (1000000000)", "limits.max_inner_steps_x_episodes"}},
      {"training.meta_batch=1e8", {"training.meta_batch (100000000)", "limits.max_rows (10000000)"}},
      {"training.hidden=[100000000]", {"training.hidden [100000000]", "limits.max_parameters (10000000)"}},
      {"data.simulator.bars=1e12", {"data.simulator.bars (1000000000000)", "limits.max_bars (10000000)"}},
      {"evaluation.episodes=100000000", {"evaluation.episodes (100000000)", "limits.max_rows"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.set);
    const std::string message = refusal("", {c.set});
    for (const auto& e : c.expect) CHECK_MESSAGE(message.find(e) != std::string::npos, message);
    CHECK(message.find("raise limits.") != std::string::npos);
  }
  // Raising the limit is the documented way through (the values are then only checked, not run).
  CHECK(parse_run_config("limits:\n  max_parameters: 1000000000000\n", {"training.hidden=[100000000]"})
            .limits.max_parameters == 1000000000000);
  CHECK(parse_run_config("", {"evaluation.steps=[1000000000]", "limits.max_inner_steps_x_episodes=1e13"})
            .benchmark.steps == std::vector<int>{1000000000});
  CHECK(refusal("limits:\n  max_rows: 0\n").find("limits.max_rows must be >= 1") != std::string::npos);
  CHECK(refusal("limits:\n  max_everything: 3\n").find("unknown key 'limits.max_everything'") != std::string::npos);
}

TEST_CASE("run config: silently accepted values are refused naming the key") {
  CHECK(refusal("", {"training.inner_lr=-1"}).find("training.inner_lr must be a finite number > 0, got -1") !=
        std::string::npos);
  CHECK(refusal("", {"evaluation.alpha=2"}).find("evaluation.alpha must be a finite number in (0, 1)") !=
        std::string::npos);
  CHECK(refusal("", {"training.diagnose_every=0"}).find("training.diagnose_every must be >= 1") != std::string::npos);
  CHECK(refusal("", {"learners=[]"}).find("learners is empty") != std::string::npos);
  CHECK(refusal("", {"tasks.families=[]"}).find("tasks.families is empty") != std::string::npos);
  CHECK(refusal("", {"learners=[maml, maml]"}).find("learners lists 'maml' twice") != std::string::npos);
  CHECK(refusal("", {"evaluation.fee_rate=.nan"})
            .find("evaluation.fee_rate must be a finite number in [0, 1), got nan") != std::string::npos);
  CHECK(refusal("", {"evaluation.slippage_rate=.inf"}).find("evaluation.slippage_rate") != std::string::npos);
}

TEST_CASE("run config: an empty override or value is an error, never the built-in default") {
  const std::string file = "training:\n  inner_lr: 0.2\n";
  CHECK(parse_run_config(file).benchmark.learner_options.maml.inner_lr == doctest::Approx(0.2));
  CHECK(refusal(file, {"training.inner_lr="}).find("override 'training.inner_lr=' has no value after '='") !=
        std::string::npos);
  CHECK(refusal(file, {"training.inner_lr=  "}).find("has no value") != std::string::npos);
  CHECK(refusal("training:\n  inner_lr:\n").find("'training.inner_lr' has no value (empty or null)") !=
        std::string::npos);
  CHECK(refusal("", {"training.inner_lr=~"}).find("'training.inner_lr' has no value") != std::string::npos);
}

TEST_CASE("run config: a key given twice is refused with both lines") {
  CHECK(refusal("training:\n  inner_lr: 0.2\n  meta_steps: 3\n  inner_lr: 0.5\n")
            .find("key 'training.inner_lr' is given twice (line 2 and line 4)") != std::string::npos);
  CHECK(refusal("seed: 1\nseed: 2\n").find("key 'seed' is given twice (line 1 and line 2)") != std::string::npos);
  CHECK(refusal("training:\n  hidden: [8]\ntraining:\n  meta_steps: 3\n").find("key 'training' is given twice") !=
        std::string::npos);
}

// These reached a component (learner, optimizer, family, simulator) and ended with exit 1 and the
// component's name; the config reader now refuses them with the key.
TEST_CASE("run config: component checks are done first with the config key") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"training.inner_steps=0", "training.inner_steps must be >= 1, got 0"},
      {"training.reptile_steps=0", "training.reptile_steps must be >= 1"},
      {"training.outer_optimizer=rmsprop", "training.outer_optimizer must be sgd, adam or adamw"},
      {"training.activation=swish", "training.activation:"},
      {"training.outer_lr=0", "training.outer_lr must be a finite number > 0"},
      {"training.clip_norm=-1", "training.clip_norm must be a finite number >= 0"},
      {"training.train_shots=0", "training.train_shots must be >= 1"},
      {"training.meta_batch=0", "training.meta_batch must be >= 1"},
      {"training.meta_steps=-1", "training.meta_steps must be >= 0"},
      {"training.hidden=[]", "training.hidden must list at least one layer width"},
      {"training.hidden=[8, 0]", "training.hidden: every layer width must be >= 1"},
      {"data.simulator.assets=0", "data.simulator.assets must be >= 1"},
      {"data.simulator.exchanges=0", "data.simulator.exchanges must be >= 1"},
      {"data.simulator.bars=1", "data.simulator.bars must be >= 2"},
      {"tasks.query_size=0", "tasks.query_size must be >= 1"},
      {"tasks.horizon=0", "tasks.horizon must be >= 1"},
      {"tasks.stride=0", "tasks.stride must be >= 1"},
      {"tasks.embargo=-1", "tasks.embargo must be >= 0"},
      {"tasks.train_end=0.9", "tasks.train_end (0.9) must be below tasks.validation_end (0.8)"},
      {"tasks.validation_end=1.5", "tasks.validation_end must be a finite number in (0, 1)"},
      {"tasks.direction_threshold=-1", "tasks.direction_threshold must be a finite number >= 0"},
      {"tasks.portfolio_assets=0", "tasks.portfolio_assets must be >= 1"},
      {"tasks.rebalance=monthly", "tasks.rebalance must be daily, weekly or a positive bar count"},
      {"evaluation.shots=[0]", "evaluation.shots: every value must be >= 1"},
      {"evaluation.steps=[]", "evaluation.steps is empty"},
      {"evaluation.runs=0", "evaluation.runs must be >= 1"},
      {"evaluation.episodes=1", "evaluation.episodes must be >= 2"},
      {"evaluation.baseline_lr=0", "evaluation.baseline_lr must be a finite number > 0"},
      {"evaluation.bootstrap_resamples=0", "evaluation.bootstrap_resamples must be >= 1"},
      {"training.meta_steps=1.5", "'training.meta_steps' has an invalid value '1.5' (expected an integer"},
      {"evaluation.runs=1e10", "'evaluation.runs' has an invalid value '1e10' (expected an integer from"},
  };
  for (const auto& [set, expect] : cases) {
    CAPTURE(set);
    const std::string message = refusal("", {set});
    CHECK_MESSAGE(message.find(expect) != std::string::npos, message);
  }
  // An integer in float notation is that integer.
  CHECK(parse_run_config("", {"training.meta_steps=1e3"}).benchmark.meta_steps == 1000);
  CHECK(parse_run_config("", {"training.hidden=[1e2, 16]"}).benchmark.hidden == std::vector<std::int64_t>{100, 16});
}

TEST_CASE("run config: the resolved YAML reads back to the same configuration") {
  for (const auto& overrides : std::vector<std::vector<std::string>>{
           {},
           {"training.meta_steps=7", "training.hidden=[16, 8]", "training.inner_lr=0.0123456789", "seed=99",
            "evaluation.shots=[2, 3]", "tasks.symbols=[SIM0/USD]", "data.simulator.cross_pairs=true",
            "limits.max_rows=123456", "out=/tmp/some dir/x"},
           {"data.source=files", "data.files=[{path: a.csv, exchange: binance}, b.csv]", "data.root=../shared"}}) {
    CAPTURE(overrides.size());
    const RunConfig c = parse_run_config("", overrides);
    const std::string text = resolved_config_yaml(c);
    const RunConfig back = parse_run_config(text, {}, "resolved");
    CHECK(resolved_config_yaml(back) == text);
    CHECK(back.benchmark.meta_steps == c.benchmark.meta_steps);
    CHECK(back.benchmark.hidden == c.benchmark.hidden);
    CHECK(back.benchmark.learner_options.maml.inner_lr == c.benchmark.learner_options.maml.inner_lr);
    CHECK(back.benchmark.out_dir == c.benchmark.out_dir);
    CHECK(back.data.files.size() == c.data.files.size());
    CHECK(back.limits.max_rows == c.limits.max_rows);
    CHECK(back.distribution.symbols == c.distribution.symbols);
  }
  // Keys the writer does not know are carried over as given.
  RunConfig c = parse_run_config("");
  c.source_text = "evaluation:\n  future_key: 3\n";
  CHECK(flatten_config(resolved_config_yaml(c)).at("evaluation.future_key") == "3");
  CHECK(is_evaluation_key("evaluation.episodes"));
  CHECK(is_evaluation_key("limits.max_rows"));
  CHECK_FALSE(is_evaluation_key("training.meta_steps"));
  CHECK_FALSE(is_evaluation_key("learners"));
}

TEST_CASE("progress bar renders percentage, counts, elapsed and ETA") {
  ProgressBar bar(200, "bench", false);
  const std::string line = bar.render(50, "loss 0.9");
  CHECK(line.find("bench [######..................]  25% 50/200") == 0);
  CHECK(line.find("loss 0.9") != std::string::npos);
  CHECK(bar.render(0, "").find("< ?") != std::string::npos);  // no ETA before the first unit
  CHECK(format_duration(65) == "1:05");
  CHECK(format_duration(3723) == "1:02:03");
}

TEST_CASE("progress: lines mode prints whole lines without carriage returns or escape codes") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  {
    ProgressBar lines(4, "train", ProgressMode::lines, f, 0.0);
    lines.update(1, "step 1");
    lines.update(2, "step 2");
    lines.finish("done");
    ProgressBar off(4, "train", ProgressMode::off, f, 0.0);
    off.update(1, "never");
    off.finish("never");
  }
  std::rewind(f);
  std::string text;
  for (int ch; (ch = std::fgetc(f)) != EOF;) text += static_cast<char>(ch);
  std::fclose(f);
  CHECK(text.find('\r') == std::string::npos);
  CHECK(text.find('\033') == std::string::npos);
  CHECK(text.find("train [######..................]  25% 1/4") == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  CHECK(text.find("never") == std::string::npos);
}

TEST_CASE("run config: checkpoint selection keys (training.validate_every, validation_episodes, select_best)") {
  const RunConfig d = parse_run_config("");
  CHECK(d.benchmark.validate_every == 100);
  CHECK(d.benchmark.validation_episodes == 50);
  CHECK(d.benchmark.select_best);
  const RunConfig c =
      parse_run_config("training:\n  validate_every: 0\n  validation_episodes: 7\n  select_best: false\n");
  CHECK(c.benchmark.validate_every == 0);
  CHECK(c.benchmark.validation_episodes == 7);
  CHECK_FALSE(c.benchmark.select_best);
  CHECK(parse_run_config("", {"training.validate_every=25"}).benchmark.validate_every == 25);

  CHECK(refusal("", {"training.validate_every=-1"}).find("training.validate_every must be >= 0, got -1") !=
        std::string::npos);
  CHECK(refusal("", {"training.validation_episodes=0"}).find("training.validation_episodes must be >= 1, got 0") !=
        std::string::npos);
  CHECK(refusal("", {"training.select_best=maybe"}).find("training.select_best") != std::string::npos);
  CHECK(refusal("", {"training.validate_every=often"}).find("training.validate_every") != std::string::npos);
  // The validation episodes are held in memory while training: bounded like the test episodes.
  CHECK(refusal("", {"training.validation_episodes=100000000"}).find("training.validation_episodes") !=
        std::string::npos);
  CHECK(refusal("", {"training.validation_episodes=100000000"}).find("limits.max_rows") != std::string::npos);

  // The resolved config writes them back.
  const RunConfig r = parse_run_config(
      "", {"training.validate_every=30", "training.validation_episodes=9", "training.select_best=false"});
  const RunConfig back = parse_run_config(resolved_config_yaml(r), {}, "resolved");
  CHECK(back.benchmark.validate_every == 30);
  CHECK(back.benchmark.validation_episodes == 9);
  CHECK_FALSE(back.benchmark.select_best);
  CHECK(resolved_config_yaml(back) == resolved_config_yaml(r));
}

TEST_CASE("run config: raw-window features and the temporal model (tasks.features, training.model)") {
  const RunConfig d = parse_run_config("");
  CHECK(d.features.set == tasks::FeatureSet::indicators);
  CHECK(d.features.raw_window.length == 32);
  CHECK(d.benchmark.model == "mlp");
  CHECK(d.benchmark.temporal.channels == 16);
  CHECK(d.benchmark.temporal.layers == 4);
  CHECK(d.benchmark.temporal.kernel == 3);
  const RunConfig c = parse_run_config(
      "tasks:\n  features: raw_window\n  raw_window: {length: 24}\ntraining:\n  model: temporal\n"
      "  temporal: {channels: 8, layers: 3, kernel: 2}\n");
  CHECK(c.features.is_raw_window());
  CHECK(c.features.raw_window.length == 24);
  CHECK(c.benchmark.model == "temporal");
  CHECK(c.benchmark.temporal.channels == 8);
  CHECK(c.benchmark.temporal.layers == 3);
  CHECK(c.benchmark.temporal.kernel == 2);
  // An MLP on raw windows is a valid configuration too.
  CHECK(parse_run_config("", {"tasks.features=raw_window"}).benchmark.model == "mlp");

  const RunConfig back = parse_run_config(resolved_config_yaml(c), {}, "resolved");
  CHECK(back.features.raw_window.length == 24);
  CHECK(back.benchmark.temporal.layers == 3);
  CHECK(resolved_config_yaml(back) == resolved_config_yaml(c));

  CHECK(refusal("", {"training.model=temporal"}).find("set tasks.features: raw_window") != std::string::npos);
  CHECK(refusal("", {"training.model=transformer"}).find("training.model must be mlp or temporal") !=
        std::string::npos);
  CHECK(
      refusal("", {"tasks.features=candles"}).find("tasks.features must be indicators or raw_window, got 'candles'") !=
      std::string::npos);
  CHECK(refusal("", {"tasks.features=raw_window", "tasks.raw_window.length=1"})
            .find("tasks.raw_window.length must be >= 2, got 1") != std::string::npos);
  CHECK(refusal("", {"tasks.raw_window.width=3"}).find("unknown key 'tasks.raw_window.width'") != std::string::npos);
  CHECK(refusal("", {"training.temporal.dilation=2"}).find("unknown key 'training.temporal.dilation'") !=
        std::string::npos);
  CHECK(refusal("", {"tasks.features=raw_window", "training.model=temporal", "training.temporal.channels=0"})
            .find("training.temporal.channels must be >= 1, got 0") != std::string::npos);
  CHECK(refusal("", {"tasks.features=raw_window", "training.model=temporal", "training.temporal.layers=31"})
            .find("training.temporal.layers must be <= 30") != std::string::npos);
  CHECK(refusal("", {"tasks.features=raw_window", "training.model=temporal", "training.temporal.channels=100000"})
            .find("limits.max_parameters") != std::string::npos);
}
