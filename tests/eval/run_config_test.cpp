#include <doctest/doctest.h>

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

  CHECK_THROWS_WITH_AS(parse_run_config("trainig:\n  meta_steps: 3\n"), doctest::Contains("unknown key 'trainig'"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("training:\n  meta_stepz: 3\n"), doctest::Contains("training.meta_stepz"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("training:\n  meta_steps: lots\n"), doctest::Contains("'training.meta_steps' has an invalid value"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("a: [1\n"), doctest::Contains("not valid YAML"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"oops"}), doctest::Contains("section.key=value"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("data:\n  source: files\n"), doctest::Contains("data.files is empty"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("learners: [maml, alchemy]\n"), doctest::Contains("unknown learner 'alchemy'"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("tasks:\n  families: [tarot]\n"), doctest::Contains("unknown family 'tarot'"), ConfigError);
  CHECK_THROWS_WITH_AS(load_run_config("/no/such/config.yaml"), doctest::Contains("cannot read the config file"), ConfigError);
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
