// The task sampler in the training loop: the sampler.* keys of the run configuration and what they do
// to a market source's meta-training batches (eval/episodes.h, make_market_sources).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "eval/episodes.h"
#include "eval/run_config.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::eval;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const tasks::PreparedMarket> small_market() {
  static const auto m = [] {
    tasks::SimulatorConfig c;
    c.bars = 1500;
    c.assets = 3;
    c.exchanges = 1;
    c.seed = 4;
    return tasks::PreparedMarket::make(tasks::simulate_market(c).market);
  }();
  return m;
}

FamilySource regime_source(const tasks::SamplerConfig& sampler) {
  tasks::DistributionConfig c;
  c.families = {"market_regime"};
  c.horizons = {4};
  MarketSourceOptions options;
  options.train_shots = 3;
  options.query_size = 8;
  options.sampler = sampler;
  return make_market_sources(small_market(), c, options).front();
}

bool same_task(const tasks::Task& a, const tasks::Task& b) {
  return a.symbols == b.symbols && a.support_begin_ms == b.support_begin_ms && a.query_begin_ms == b.query_begin_ms &&
         a.support_x.to_vector<float>() == b.support_x.to_vector<float>() &&
         a.support_y.to_vector<double>() == b.support_y.to_vector<double>() &&
         a.query_x.to_vector<float>() == b.query_x.to_vector<float>() &&
         a.query_y.to_vector<double>() == b.query_y.to_vector<double>();
}

// Three meta-batches of 6 from a fresh Generator(seed), and the generator's state after them.
std::pair<tasks::TaskBatch, Generator::State> three_batches(const FamilySource& source, std::uint64_t seed = 21) {
  Generator gen(seed);
  tasks::TaskBatch all;
  for (int b = 0; b < 3; ++b)
    for (tasks::Task& t : source.train_batch(6, gen)) all.push_back(std::move(t));
  return {all, gen.state()};
}

int difficulty_bin(const tasks::Task& t) { return std::min(3, static_cast<int>(std::clamp(t.difficulty, 0.0, 1.0) * 4)); }

}  // namespace

TEST_CASE("sampler config: keys, defaults, errors naming the key, resolved YAML") {
  const RunConfig d = parse_run_config("");
  CHECK(d.sampler.workers == 0);
  CHECK(d.sampler.prefetch == 0);
  CHECK(d.sampler.cache_dir.empty());
  CHECK_FALSE(d.sampler.balance_difficulty);
  CHECK(d.sampler.min_quality == 0.0);

  const RunConfig c = parse_run_config("sampler:\n  workers: 3\n  cache_dir: /tmp/tasks\n",
                                       {"sampler.prefetch=4", "sampler.balance_difficulty=true",
                                        "sampler.min_quality=0.25"});
  CHECK(c.sampler.workers == 3);
  CHECK(c.sampler.prefetch == 4);
  CHECK(c.sampler.cache_dir == "/tmp/tasks");
  CHECK(c.sampler.balance_difficulty);
  CHECK(c.sampler.min_quality == doctest::Approx(0.25));
  const RunConfig back = parse_run_config(resolved_config_yaml(c), {}, "resolved");
  CHECK(back.sampler.workers == 3);
  CHECK(back.sampler.prefetch == 4);
  CHECK(back.sampler.cache_dir == "/tmp/tasks");
  CHECK(back.sampler.balance_difficulty);
  CHECK(back.sampler.min_quality == doctest::Approx(0.25));
  CHECK(resolved_config_yaml(back) == resolved_config_yaml(c));

  CHECK_THROWS_WITH_AS(parse_run_config("sampler:\n  worker: 2\n"), doctest::Contains("unknown key 'sampler.worker'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"sampler.workers=-1"}), doctest::Contains("sampler.workers must be"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"sampler.workers=many"}), doctest::Contains("'sampler.workers'"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"sampler.prefetch=-2"}), doctest::Contains("sampler.prefetch must be"),
                       ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"sampler.min_quality=1.5"}),
                       doctest::Contains("sampler.min_quality must be a number in [0, 1]"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("", {"sampler.balance_difficulty=maybe"}),
                       doctest::Contains("'sampler.balance_difficulty'"), ConfigError);
  CHECK_THROWS_WITH_AS(parse_run_config("sampler:\n  cache_dir:\n"), doctest::Contains("'sampler.cache_dir' has no value"),
                       ConfigError);
  // Speed-only keys may differ between training and eval / resume; the filters may not.
  CHECK(is_evaluation_key("sampler.workers"));
  CHECK(is_evaluation_key("sampler.cache_dir"));
  CHECK_FALSE(is_evaluation_key("sampler.min_quality"));
  CHECK_FALSE(is_evaluation_key("sampler.balance_difficulty"));
}

TEST_CASE("sampler in training: the same tasks and generator state as sample_batch, whatever workers and prefetch") {
  // Today's stream: TaskDistribution::sample_batch on the caller's generator.
  tasks::DistributionConfig dc;
  dc.families = {"market_regime"};
  dc.horizons = {4};
  dc.query_size = 8;
  dc.support_size = support_rows(regime_source({}), 3);
  const tasks::TaskDistribution dist(small_market(), dc);
  Generator gen(21);
  tasks::TaskBatch expected;
  for (int b = 0; b < 3; ++b)
    for (tasks::Task& t : dist.sample_batch(tasks::Split::train, 6, gen)) expected.push_back(std::move(t));

  for (const auto& [workers, prefetch] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {3, 0}, {1, 4}, {3, 4}}) {
    CAPTURE(workers);
    CAPTURE(prefetch);
    tasks::SamplerConfig sc;
    sc.workers = workers;
    sc.prefetch = prefetch;
    const FamilySource source = regime_source(sc);
    const auto [tasks, state] = three_batches(source);
    CHECK(state.words == gen.state().words);  // what a checkpoint stores: unchanged
    REQUIRE(tasks.size() == expected.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) CHECK(same_task(tasks[i], expected[i]));
    // Another generator restarts the stream there (baselines' fit, the next learner, a resume).
    Generator other(5), other_ref(5);
    const tasks::TaskBatch restarted = source.train_batch(2, other);
    const tasks::TaskBatch restarted_ref = dist.sample_batch(tasks::Split::train, 2, other_ref);
    CHECK(same_task(restarted[0], restarted_ref[0]));
    CHECK(same_task(restarted[1], restarted_ref[1]));
    CHECK(other.state().words == other_ref.state().words);
  }
}

TEST_CASE("sampler in training: a cache_dir serves a second run from disk") {
  const fs::path dir = fs::temp_directory_path() / "metatape_training_sampler_cache";
  fs::remove_all(dir);
  tasks::SamplerConfig sc;
  sc.cache_dir = dir.string();
  sc.workers = 0;  // no read-ahead: the counts below are exact
  sc.prefetch = 0;
  {
    const FamilySource first = regime_source(sc);
    const auto [tasks1, state1] = three_batches(first);
    const tasks::SamplerStats s1 = first.train_sampler_stats();
    CHECK(s1.disk_hits == 0);
    CHECK(s1.built + s1.memory_hits == 18);
    sc.workers = 2;  // builds each meta-batch in parallel, reads nothing ahead of it
    const FamilySource second = regime_source(sc);
    const auto [tasks2, state2] = three_batches(second);
    const tasks::SamplerStats s2 = second.train_sampler_stats();
    CHECK(s2.built == 0);
    CHECK(s2.disk_hits == s1.built);
    CHECK(state2.words == state1.words);
    for (std::size_t i = 0; i < tasks1.size(); ++i) CHECK(same_task(tasks1[i], tasks2[i]));
  }  // the samplers' workers are joined here, before their files are removed
  fs::remove_all(dir);
}

TEST_CASE("sampler in training: the quality filter and difficulty balance reach the meta-batches") {
  const auto [plain, plain_state] = three_batches(regime_source({}));
  std::vector<double> quality;
  for (const tasks::Task& t : plain) quality.push_back(t.quality);
  std::sort(quality.begin(), quality.end());
  const double median = quality[quality.size() / 2];
  REQUIRE(quality.front() < median);  // some task would be filtered

  tasks::SamplerConfig filtered;
  filtered.min_quality = median;
  filtered.workers = 2;
  const FamilySource source = regime_source(filtered);
  const auto [kept, kept_state] = three_batches(source);
  for (const tasks::Task& t : kept) CHECK(t.quality >= median);
  CHECK(source.train_sampler_stats().skipped_quality > 0);
  CHECK_FALSE(kept_state.words == plain_state.words);  // skipped tasks consumed their draws

  // Balance: the unfiltered stream's most common difficulty bin loses share.
  std::map<int, int> plain_bins, balanced_bins;
  for (const tasks::Task& t : plain) plain_bins[difficulty_bin(t)]++;
  tasks::SamplerConfig bal;
  bal.balance_difficulty = true;
  const auto [balanced, balanced_state] = three_batches(regime_source(bal));
  for (const tasks::Task& t : balanced) balanced_bins[difficulty_bin(t)]++;
  auto most = [](const std::map<int, int>& bins) {
    int m = 0;
    for (const auto& [bin, n] : bins) m = std::max(m, n);
    return m;
  };
  MESSAGE("difficulty bins, plain: " << plain_bins.size() << " bins, largest " << most(plain_bins)
                                     << "; balanced: " << balanced_bins.size() << " bins, largest "
                                     << most(balanced_bins));
  CHECK(balanced_bins.size() >= plain_bins.size());
  CHECK(most(balanced_bins) < most(plain_bins));
}
