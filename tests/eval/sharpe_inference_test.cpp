// eval/sharpe_inference against the worked example of Bailey and Lopez de Prado (2014) and a fixture
// computed independently with numpy / scipy / arch (scripts/make_sharpe_fixture.py), plus the
// distributional properties of the stationary bootstrap.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/random.h"
#include "eval/sharpe_inference.h"
#include "kernels/error.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

nlohmann::json load_fixture() {
  const std::string path = std::string(METATAPE_SOURCE_DIR) + "/tests/data/stats/sharpe_inference.json";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing " << path << " (run scripts/make_sharpe_fixture.py)");
  return nlohmann::json::parse(in);
}

std::vector<double> vec(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

}  // namespace

TEST_CASE("deflated Sharpe: the numerical example of Bailey and Lopez de Prado (2014)") {
  // N = 100 trials, variance of the annualised trial Sharpe ratios 1/2, T = 1250 daily observations
  // (250 a year), skewness -3, kurtosis 10, annualised Sharpe 2.5: E[max SR] = 0.1132 per day and
  // DSR = 0.9004 (the paper's values, to its four decimals).
  const double sr0 = expected_maximum_sharpe(100, 0.5 / 250.0);
  CHECK(sr0 == doctest::Approx(0.1132).epsilon(5e-4));
  const double dsr = probabilistic_sharpe_ratio(2.5 / std::sqrt(250.0), sr0, 1250, -3.0, 10.0);
  CHECK(dsr == doctest::Approx(0.9004).epsilon(1e-4));
}

TEST_CASE("sharpe moments match numpy and scipy") {
  const auto fx = load_fixture();
  REQUIRE(fx["moments"].size() >= 4);
  for (const auto& c : fx["moments"]) {
    CAPTURE(c["name"].get<std::string>());
    const ReturnMoments m = return_moments(vec(c["returns"]));
    CHECK(m.mean == doctest::Approx(c["mean"].get<double>()).epsilon(1e-12));
    CHECK(m.sd == doctest::Approx(c["sd"].get<double>()).epsilon(1e-12));
    CHECK(m.skewness == doctest::Approx(c["skewness"].get<double>()).epsilon(1e-10));
    CHECK(m.kurtosis == doctest::Approx(c["kurtosis"].get<double>()).epsilon(1e-10));
    CHECK(sharpe_ratio(vec(c["returns"])) == doctest::Approx(c["sharpe"].get<double>()).epsilon(1e-12));
  }
}

TEST_CASE("probabilistic and expected maximum Sharpe match scipy") {
  const auto fx = load_fixture();
  for (const auto& c : fx["psr"]) {
    CHECK(probabilistic_sharpe_ratio(c["sharpe"], c["benchmark"], c["n"], c["skewness"], c["kurtosis"]) ==
          doctest::Approx(c["value"].get<double>()).epsilon(1e-9));
  }
  for (const auto& c : fx["expected_max"]) {
    CAPTURE(c["trials"].get<int>());
    CHECK(expected_maximum_sharpe(c["trials"], c["variance"]) ==
          doctest::Approx(c["value"].get<double>()).epsilon(1e-9));
  }
}

TEST_CASE("deflated Sharpe of the best of N trials matches an independent scipy computation") {
  const auto fx = load_fixture();
  REQUIRE(fx["dsr"].size() == 3);
  for (const auto& c : fx["dsr"]) {
    CAPTURE(c["case"].get<int>());
    const double variance = trial_sharpe_variance(vec(c["trial_sharpes"]));
    CHECK(variance == doctest::Approx(c["trial_variance"].get<double>()).epsilon(1e-12));
    const DeflatedSharpe d = deflated_sharpe_ratio(vec(c["returns"]), c["trials"], variance);
    CHECK(d.sharpe == doctest::Approx(c["sharpe"].get<double>()).epsilon(1e-12));
    CHECK(d.expected_max == doctest::Approx(c["expected_max"].get<double>()).epsilon(1e-9));
    CHECK(d.dsr == doctest::Approx(c["dsr"].get<double>()).epsilon(1e-8));
  }
}

TEST_CASE("deflated Sharpe: limits and errors") {
  CHECK(expected_maximum_sharpe(1, 0.7) == 0.0);   // no selection
  CHECK(expected_maximum_sharpe(50, 0.0) == 0.0);  // identical trials
  CHECK(expected_maximum_sharpe(10, 0.01) < expected_maximum_sharpe(100, 0.01));
  CHECK(trial_sharpe_variance({0.3}) == 0.0);
  CHECK_THROWS_AS(expected_maximum_sharpe(0, 0.1), Error);
  CHECK_THROWS_AS(expected_maximum_sharpe(5, -0.1), Error);
  CHECK_THROWS_AS(deflated_sharpe_ratio({0.01}, 3, 0.1), Error);
  // A constant stream: Sharpe 0, normal moments, PSR against a positive SR0 below one half.
  const DeflatedSharpe flat = deflated_sharpe_ratio(std::vector<double>(30, 0.0), 10, 0.01);
  CHECK(flat.sharpe == 0.0);
  CHECK(flat.kurtosis == 3.0);
  CHECK(flat.dsr < 0.5);
  CHECK(std::isfinite(flat.dsr));
  // A constant nonzero stream: its computed mean is off by rounding, yet its Sharpe ratio is 0, not 1e16.
  const std::vector<double> same(37, 0.001);
  CHECK(sharpe_ratio(same) == 0.0);
  CHECK(return_moments(same).sd == 0.0);
  CHECK(return_moments(same).kurtosis == 3.0);
  // More trials deflate more.
  Generator gen(3);
  std::vector<double> r(400);
  for (double& x : r) x = 0.003 + 0.02 * gen.normal();
  CHECK(deflated_sharpe_ratio(r, 100, 0.002).dsr < deflated_sharpe_ratio(r, 2, 0.002).dsr);
}

TEST_CASE("stationary bootstrap indices equal arch's on the same random streams") {
  const auto fx = load_fixture();
  REQUIRE(fx["bootstrap_streams"].size() == 9);
  for (const auto& c : fx["bootstrap_streams"]) {
    const auto starts = c["starts"].get<std::vector<std::size_t>>();
    const auto idx = stationary_bootstrap_indices(starts, vec(c["uniforms"]), c["block"].get<double>());
    CHECK(idx == c["indices"].get<std::vector<std::size_t>>());
  }
  CHECK_THROWS_AS(stationary_bootstrap_indices({0, 1}, {0.5}, 2.0), Error);
  CHECK_THROWS_AS(stationary_bootstrap_indices({0, 1}, {0.5, 0.5}, 0.5), Error);
  CHECK_THROWS_AS(stationary_bootstrap_indices({0, 2}, {0.5, 0.5}, 2.0), Error);
}

TEST_CASE("bootstrap percentile interval of the Sharpe ratio matches numpy on the same resamples") {
  const auto fx = load_fixture();
  const auto& c = fx["bootstrap_interval"];
  const auto resamples = c["resamples"].get<std::vector<std::vector<std::size_t>>>();
  REQUIRE(resamples.size() == 200);
  const Interval i = sharpe_interval_from_resamples(vec(c["returns"]), resamples, c["confidence"]);
  CHECK(i.estimate == doctest::Approx(c["estimate"].get<double>()).epsilon(1e-12));
  CHECK(i.low == doctest::Approx(c["low"].get<double>()).epsilon(1e-10));
  CHECK(i.high == doctest::Approx(c["high"].get<double>()).epsilon(1e-10));
}

TEST_CASE("Politis-White automatic block length matches arch's optimal_block_length") {
  const auto fx = load_fixture();
  REQUIRE(fx["block_length"].size() == 7);
  for (const auto& c : fx["block_length"]) {
    CAPTURE(c["name"].get<std::string>());
    const auto x = vec(c["x"]);
    CHECK(politis_white_block_length(x) == doctest::Approx(c["b_sb"].get<double>()).epsilon(1e-9));
    CHECK(automatic_block_length(x) == doctest::Approx(std::max(1.0, c["b_sb"].get<double>())).epsilon(1e-9));
  }
  // Short or constant series fall back to ceil(n^(1/3)).
  CHECK(automatic_block_length(std::vector<double>(10, 0.01)) == default_block_length(10));
  CHECK(automatic_block_length(std::vector<double>(40, 0.0)) == default_block_length(40));
  CHECK_THROWS_AS(politis_white_block_length(std::vector<double>(15, 0.0)), Error);
}

TEST_CASE("stationary bootstrap: blocks have the configured mean length") {
  Generator gen(11);
  for (double block : {1.0, 4.0, 12.0}) {
    CAPTURE(block);
    const std::size_t n = 20000;
    const auto idx = stationary_bootstrap_indices(n, block, gen);
    std::size_t breaks = 0;  // positions where a block ends (the next index is not the successor)
    for (std::size_t t = 1; t < n; ++t) breaks += idx[t] != (idx[t - 1] + 1) % n;
    // A new block starts with probability 1/L; it continues the old one by chance with probability 1/n.
    const double blocks = 1.0 + static_cast<double>(breaks);
    CHECK(static_cast<double>(n) / blocks == doctest::Approx(block).epsilon(0.06));
    for (std::size_t i : idx) CHECK_UNARY(i < n);
  }
  CHECK(default_block_length(1) == 1.0);
  CHECK(default_block_length(100) == 5.0);  // ceil(4.64)
  CHECK(default_block_length(365) == 8.0);  // ceil(7.14)
}

TEST_CASE("stationary bootstrap Sharpe interval: seeded, and covers the true Sharpe on i.i.d. data") {
  Generator data(5);
  std::vector<double> r(200);
  for (double& x : r) x = 0.001 + 0.01 * data.normal();
  const Interval a = sharpe_bootstrap_interval(r, 0.0, 300, 42);
  const Interval b = sharpe_bootstrap_interval(r, 0.0, 300, 42);
  CHECK(a.low == b.low);
  CHECK(a.high == b.high);
  CHECK(a.low < a.estimate);
  CHECK(a.estimate < a.high);
  CHECK_THROWS_AS(sharpe_bootstrap_interval(r, 0.0, 5, 42), Error);
  CHECK_THROWS_AS(sharpe_bootstrap_interval({0.1}, 0.0, 100, 42), Error);
  // Coverage of the 90% interval on i.i.d. normal returns with true Sharpe 0.1: close to nominal.
  const double true_sharpe = 0.1;
  int covered = 0;
  const int trials = 200;
  for (int k = 0; k < trials; ++k) {
    std::vector<double> x(120);
    for (double& v : x) v = 0.01 * (true_sharpe + data.normal());
    const Interval ci = sharpe_bootstrap_interval(x, 0.0, 200, 1000 + static_cast<std::uint64_t>(k), 0.90);
    covered += ci.low <= true_sharpe && true_sharpe <= ci.high;
  }
  const double coverage = static_cast<double>(covered) / trials;
  CAPTURE(coverage);
  CHECK(coverage >= 0.82);
  CHECK(coverage <= 0.97);
}
