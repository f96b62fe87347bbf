// The task-family registry (tasks/families.h): the one list of family names, each entry agreeing with
// the family it makes (name, kind, class count), and the lookups' error messages.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/error.h"
#include "tasks/families.h"

using namespace metatape;
using namespace metatape::tasks;

TEST_CASE("family registry: names in order, lookups, text") {
  const std::vector<std::string> expected = {"price_direction",      "market_regime", "arbitrage",
                                             "triangular_arbitrage", "portfolio",     "risk"};
  CHECK(family_names() == expected);
  CHECK(family_names_text() == "price_direction, market_regime, arbitrage, triangular_arbitrage, portfolio, risk");
  CHECK(family_names_text(" ") == "price_direction market_regime arbitrage triangular_arbitrage portfolio risk");
  CHECK(find_family("momentum") == nullptr);
  REQUIRE(find_family("risk") != nullptr);
  CHECK(&family_info("risk") == find_family("risk"));
  CHECK_THROWS_WITH_AS(
      family_info("momentum"),
      "metatape: make_family: unknown family 'momentum' (known: price_direction, market_regime, arbitrage, "
      "triangular_arbitrage, portfolio, risk)",
      Error);
  CHECK_THROWS_WITH_AS(make_family("momentum"), doctest::Contains("known: price_direction"), Error);
}

TEST_CASE("family registry: every entry makes the family of its name and kind") {
  for (const FamilyInfo& f : family_registry()) {
    CAPTURE(f.name);
    CHECK(!f.help.empty());
    REQUIRE(static_cast<bool>(f.make));
    const auto family = make_family(f.name);
    CHECK(family->name() == f.name);
    CHECK(family->kind() == f.kind);
    // Detection families are binary; direction families are SELL / HOLD / BUY.
    if (f.detection) CHECK(family->num_classes() == 2);
    if (f.trades_direction) CHECK(family->num_classes() == 3);
  }
  FamilyConfig var;
  var.risk_var_exceedance = true;
  CHECK(make_family("risk", var)->kind() == TaskKind::classification);  // the registry's kind is the default's
}

TEST_CASE("family registry: the family properties eval reads") {
  std::vector<std::string> detection, direction, volatility;
  for (const FamilyInfo& f : family_registry()) {
    if (f.detection) detection.push_back(f.name);
    if (f.trades_direction) direction.push_back(f.name);
    if (f.forecasts_volatility) volatility.push_back(f.name);
  }
  CHECK(volatility == std::vector<std::string>{"risk"});
  CHECK(detection == std::vector<std::string>{"arbitrage", "triangular_arbitrage"});
  CHECK(direction == std::vector<std::string>{"price_direction"});
}
