// eval's use of the registries (meta/registry.h, tasks/families.h) and of the one SplitMix64 / FNV-1a:
// the config reader's name checks and defaults list the registries' names, the family-specific metrics
// follow the family properties, and derive_seed's values are pinned (published seeds depend on them).
#include <doctest/doctest.h>

#include <string>

#include "autograd/hash.h"
#include "eval/benchmark.h"
#include "eval/run_config.h"
#include "eval/scoring.h"
#include "meta/registry.h"
#include "tasks/families.h"

using namespace metatape;
using namespace metatape::eval;

TEST_CASE("derive_seed: pinned values") {
  // Reference: s = splitmix64(base); s = splitmix64(s ^ splitmix64(p + 0x1234567)) per path entry.
  CHECK(derive_seed(7, {}) == 0x63cbe1e459320dd7ULL);
  CHECK(derive_seed(7, {1, 2}) == 0x0ace20b207679520ULL);
  CHECK(derive_seed(2024, {fnv1a64("price_direction"), fnv1a64("maml")}) == 0xe4aa31646ffcb618ULL);
}

TEST_CASE("config reader: learner and family names come from the registries") {
  const RunConfig c = parse_run_config("");
  CHECK(c.benchmark.learners == meta::learner_names());  // the default runs every learner
  CHECK_THROWS_WITH_AS(
      parse_run_config("learners: [maml, alchemy]\n"),
      "metatape: config: learners: unknown learner 'alchemy'; expected some of: maml, fomaml, maml++, meta-sgd, "
      "reptile, anil, protonet, matching",
      ConfigError);
  CHECK_THROWS_WITH_AS(
      parse_run_config("tasks:\n  families: [tarot]\n"),
      "metatape: config: tasks.families: unknown family 'tarot'; expected some of: price_direction, market_regime, "
      "arbitrage, triangular_arbitrage, portfolio, risk",
      ConfigError);
  const std::string empty = "learners is empty; list at least one of: " + meta::learner_names_text();
  CHECK_THROWS_WITH_AS(parse_run_config("learners: []\n"), doctest::Contains(empty.c_str()), ConfigError);
  // Every registered name is accepted.
  for (const std::string& l : meta::learner_names()) {
    CAPTURE(l);
    CHECK_NOTHROW(parse_run_config("learners: [" + l + "]\n"));
  }
}

TEST_CASE("family-specific scoring follows the registry's family properties") {
  FamilySource f;
  for (const tasks::FamilyInfo& info : tasks::family_registry()) {
    CAPTURE(info.name);
    f.name = info.name;
    f.kind = info.kind;
    CHECK(is_detection_family(f) == info.detection);
    CHECK(trades_direction(f) == info.trades_direction);
  }
  f.name = "price_direction";
  f.kind = tasks::TaskKind::classification;
  CHECK(reference_strategy_name(f) == "buy_and_hold");
  f.name = "gaussian";  // a synthetic source: no registered family, no family-specific metrics
  CHECK_FALSE(is_detection_family(f));
  CHECK_FALSE(trades_direction(f));
  CHECK(reference_strategy_name(f).empty());
  f.name = "portfolio";
  f.kind = tasks::TaskKind::portfolio;
  CHECK(reference_strategy_name(f) == "equal_weight");
}

TEST_CASE("learner_fits: metric learners (the registry's) need classification families") {
  FamilySource cls, reg;
  cls.kind = tasks::TaskKind::classification;
  reg.kind = tasks::TaskKind::regression;
  for (const meta::LearnerInfo& l : meta::learner_registry()) {
    CAPTURE(l.name);
    CHECK(is_metric_learner(l.name) == l.metric);
    CHECK(learner_fits(l.name, cls));
    CHECK(learner_fits(l.name, reg) == !l.metric);
  }
}
