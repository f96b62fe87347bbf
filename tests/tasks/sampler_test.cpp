#include <doctest/doctest.h>

#include <filesystem>
#include <set>
#include <fstream>

#include "kernels/error.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;
namespace fs = std::filesystem;

namespace {
std::shared_ptr<const PreparedMarket> market() {
  static const auto m = [] {
    SimulatorConfig c;
    c.bars = 2500;
    c.assets = 4;
    c.exchanges = 2;
    c.seed = 9;
    c.cross_pairs = true;  // triangles for triangular_arbitrage
    return PreparedMarket::make(simulate_market(c).market);
  }();
  return m;
}

DistributionConfig all_families() {
  DistributionConfig c;
  c.families = family_names();
  c.support_size = 16;
  c.query_size = 8;
  c.horizons = {2, 6};
  c.family.rebalance = std::string(1, '6');  // portfolio rebalances every 6 bars (daily would need months of 1h bars)
  return c;
}

bool same(const Task& a, const Task& b) {
  return a.family == b.family && a.symbols == b.symbols && a.support_begin_ms == b.support_begin_ms &&
         a.query_begin_ms == b.query_begin_ms && a.support_x.to_vector<float>() == b.support_x.to_vector<float>() &&
         a.query_y.to_vector<double>() == b.query_y.to_vector<double>() && a.difficulty == b.difficulty;
}
}  // namespace

TEST_CASE("distribution: splits go forward in time, hold-out assets only in test, embargo everywhere") {
  DistributionConfig c = all_families();
  c.splits.holdout_symbols = {"SIM3/USD"};
  auto dist = std::make_shared<TaskDistribution>(market(), c);
  const auto [tr0, tr1] = dist->split_rows(Split::train);
  const auto [va0, va1] = dist->split_rows(Split::validation);
  const auto [te0, te1] = dist->split_rows(Split::test);
  CHECK(tr1 == va0);
  CHECK(va1 == te0);
  CHECK(te1 == market()->market.rows());
  const auto& time = market()->market.time_ms;
  Generator gen(3);
  bool saw_holdout_in_test = false;
  for (Split split : {Split::train, Split::validation, Split::test}) {
    const auto [lo, hi] = dist->split_rows(split);
    for (const Task& t : dist->sample_batch(split, 40, gen)) {
      CHECK(t.support_begin_ms >= time[static_cast<std::size_t>(lo)]);
      CHECK(t.query_end_ms < time[static_cast<std::size_t>(hi - 1)]);  // labels too stay inside
      CHECK(t.query_begin_ms - t.support_end_ms > 2 * market()->market.interval_ms());
      bool holdout = false;
      for (const std::string& s : t.symbols) holdout = holdout || s.rfind("SIM3/USD", 0) == 0;
      if (split != Split::test) CHECK_FALSE(holdout);
      saw_holdout_in_test = saw_holdout_in_test || (split == Split::test && holdout);
    }
  }
  CHECK(saw_holdout_in_test);
  CHECK(dist->feature_dim("price_direction") == 50);
  CHECK(dist->feature_dim("arbitrage") == 58);
  CHECK_THROWS_WITH_AS(dist->feature_dim(), doctest::Contains("differ"), Error);
  DistributionConfig leaky = all_families();
  leaky.embargo = 3;
  CHECK_THROWS_WITH_AS(TaskDistribution(market(), leaky), doctest::Contains("shorter than horizon 6"), Error);
  DistributionConfig huge = all_families();
  huge.support_size = 5000;
  TaskDistribution too_big(market(), huge);
  CHECK_THROWS_WITH_AS(too_big.sample_task(Split::train, gen), doctest::Contains("split has rows"), Error);
}

TEST_CASE("sampler: same seed, same tasks whatever the number of workers") {
  auto dist = std::make_shared<const TaskDistribution>(market(), all_families());
  std::vector<Task> reference;
  for (int workers : {0, 1, 3}) {
    SamplerConfig sc;
    sc.seed = 77;
    sc.workers = workers;
    sc.prefetch = 5;
    Sampler sampler(dist, sc);
    const TaskBatch batch = sampler.next_batch(24);
    if (reference.empty()) {
      reference = batch;
      std::set<std::string> families;
      for (const Task& t : batch) families.insert(t.family);
      CHECK(families.size() >= 4);
      continue;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      CAPTURE(workers);
      CAPTURE(i);
      CHECK(same(batch[i], reference[i]));
    }
  }
  SamplerConfig other;
  other.seed = 78;
  Sampler different(dist, other);
  CHECK_FALSE(same(different.next(), reference[0]));
}

TEST_CASE("sampler: a sequential key stream draws what sample_batch draws, whatever workers and prefetch") {
  auto dist = std::make_shared<const TaskDistribution>(market(), all_families());
  Generator reference_gen(41);
  const TaskBatch first = dist->sample_batch(Split::train, 7, reference_gen);
  const Generator::State after_first = reference_gen.state();
  const TaskBatch second = dist->sample_batch(Split::train, 5, reference_gen);
  for (const auto& [workers, prefetch] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {3, 0}, {1, 4}, {3, 4}}) {
    CAPTURE(workers);
    CAPTURE(prefetch);
    SamplerConfig sc;
    sc.workers = workers;
    sc.prefetch = prefetch;
    Sampler sampler(dist, sc, Generator(41));
    const TaskBatch a = sampler.next_batch(7);
    // The consumed position is where sample_batch left its generator, whatever was drawn ahead.
    CHECK(sampler.consumed_keys().state().words == after_first.words);
    const TaskBatch b = sampler.next_batch(5);
    CHECK(sampler.consumed_keys().state().words == reference_gen.state().words);
    REQUIRE(a.size() == first.size());
    REQUIRE(b.size() == second.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(same(a[i], first[i]));
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(same(b[i], second[i]));
  }
  SamplerConfig bad;
  bad.prefetch = -1;
  CHECK_THROWS_WITH_AS(Sampler(dist, bad, Generator(1)), doctest::Contains("prefetch is -1"), Error);
  Sampler sequential(dist, SamplerConfig{}, Generator(1));
  CHECK_THROWS_WITH_AS(sequential.key_at(0), doctest::Contains("in order"), Error);
  Sampler derived(dist, SamplerConfig{});
  CHECK_THROWS_WITH_AS(derived.consumed_keys(), doctest::Contains("derives its keys"), Error);
}

TEST_CASE("sampler: min quality, balance by difficulty, LRU") {
  auto dist = std::make_shared<const TaskDistribution>(market(), all_families());
  SamplerConfig sc;
  sc.seed = 5;
  sc.workers = 2;
  sc.min_quality = 0.5;
  Sampler filtered(dist, sc);
  for (const Task& t : filtered.next_batch(20)) CHECK(t.quality >= 0.5);
  sc.min_quality = 1.01;
  sc.max_skips = 20;
  Sampler impossible(dist, sc);
  CHECK_THROWS_WITH_AS(impossible.next(), doctest::Contains("below min_quality"), Error);

  SamplerConfig bal;
  bal.seed = 6;
  bal.workers = 2;
  bal.balance_difficulty = true;
  bal.difficulty_bins = 2;
  Sampler balanced(dist, bal);
  int easy = 0, hard = 0;
  for (const Task& t : balanced.next_batch(20)) (t.difficulty < 0.5 ? easy : hard)++;
  MESSAGE("balanced: " << easy << " easy, " << hard << " hard");
  CHECK(easy >= 5);
  CHECK(hard >= 5);

  // A tiny distribution repeats keys: the LRU serves them.
  DistributionConfig tiny = all_families();
  tiny.families = {"price_direction"};
  tiny.symbols = {"SIM0/USD"};
  tiny.support_size = 1300;
  tiny.query_size = 140;  // leaves about 10 possible start rows in the train split
  tiny.horizons = {1};
  auto tiny_dist = std::make_shared<const TaskDistribution>(market(), tiny);
  SamplerConfig lc;
  lc.workers = 0;
  Sampler lru(tiny_dist, lc);
  lru.next_batch(60);
  CHECK(lru.stats().memory_hits > 0);
  CHECK(lru.stats().built + lru.stats().memory_hits == 60);
}

TEST_CASE("sampler: disk cache hits, and a corrupted or stale entry is detected and rebuilt") {
  const fs::path dir = fs::temp_directory_path() / "metatape_task_cache_test";
  fs::remove_all(dir);
  auto dist = std::make_shared<const TaskDistribution>(market(), all_families());
  SamplerConfig sc;
  sc.seed = 12;
  sc.workers = 0;
  sc.lru_capacity = 0;
  sc.cache_dir = dir.string();
  TaskBatch first;
  {
    Sampler s(dist, sc);
    first = s.next_batch(6);
    CHECK(s.stats().built == 6);
  }
  {
    Sampler s(dist, sc);
    const TaskBatch again = s.next_batch(6);
    CHECK(s.stats().disk_hits == 6);
    for (std::size_t i = 0; i < 6; ++i) CHECK(same(again[i], first[i]));
  }
  Sampler probe(dist, sc);
  const TaskKey k0 = probe.key_at(0), k1 = probe.key_at(1), k2 = probe.key_at(2);
  // Corrupt entry 0 (flip one payload byte), truncate entry 1, and make entry 2 stale (written under
  // another distribution fingerprint).
  {
    std::fstream f(probe.cache_path(k0), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    char c = 0;
    f.read(&c, 1);
    f.seekp(200);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  fs::resize_file(probe.cache_path(k1), fs::file_size(probe.cache_path(k1)) / 2);
  write_task_file(probe.cache_path(k2), "another-fingerprint", k2.str(), first[2]);
  Task scratch;
  CHECK_FALSE(read_task_file(probe.cache_path(k0), dist->fingerprint(), k0.str(), scratch));
  CHECK_FALSE(read_task_file(probe.cache_path(k1), dist->fingerprint(), k1.str(), scratch));
  CHECK_FALSE(read_task_file(probe.cache_path(k2), dist->fingerprint(), k2.str(), scratch));
  {
    Sampler s(dist, sc);
    const TaskBatch rebuilt = s.next_batch(6);
    CHECK(s.stats().disk_rebuilt == 3);
    CHECK(s.stats().built == 3);
    CHECK(s.stats().disk_hits == 3);
    for (std::size_t i = 0; i < 6; ++i) CHECK(same(rebuilt[i], first[i]));
  }
  // The rebuilt entries were rewritten and are valid again.
  CHECK(read_task_file(probe.cache_path(k0), dist->fingerprint(), k0.str(), scratch));
  CHECK(same(scratch, first[0]));
  fs::remove_all(dir);
}

TEST_CASE("sampler: a share of each batch is built alone, the rest are shells, the stream unchanged") {
  auto dist = std::make_shared<const TaskDistribution>(market(), all_families());
  Generator reference_gen(43);
  const TaskBatch first = dist->sample_batch(Split::train, 6, reference_gen);
  const TaskBatch second = dist->sample_batch(Split::train, 6, reference_gen);
  for (const auto& [workers, prefetch] : std::vector<std::pair<int, int>>{{0, 0}, {2, 8}}) {
    CAPTURE(workers);
    SamplerConfig sc;
    sc.workers = workers;
    sc.prefetch = prefetch;
    sc.share = {6, 2, 4};  // positions 2 and 3 of every batch of 6
    Sampler sampler(dist, sc, Generator(43));
    for (const TaskBatch* reference : {&first, &second}) {
      const TaskBatch batch = sampler.next_batch(6);
      REQUIRE(batch.size() == 6);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        CAPTURE(i);
        CHECK(batch[i].kind == (*reference)[i].kind);
        CHECK(batch[i].family == (*reference)[i].family);
        if (i == 2 || i == 3) {
          CHECK(same(batch[i], (*reference)[i]));
        } else {
          CHECK_FALSE(batch[i].support_x.defined());  // a shell: not built
        }
      }
    }
    CHECK(sampler.consumed_keys().state().words == reference_gen.state().words);
    // Shells are not built, cached or counted (workers may have built ahead into the next batch).
    if (workers == 0) CHECK(sampler.stats().built == 4);
  }
  SamplerConfig filtered;
  filtered.share = {6, 0, 3};
  filtered.min_quality = 0.5;
  CHECK_THROWS_WITH_AS(Sampler(dist, filtered, Generator(1)), doctest::Contains("min_quality"), Error);
  SamplerConfig outside;
  outside.share = {6, 4, 7};
  CHECK_THROWS_WITH_AS(Sampler(dist, outside, Generator(1)), doctest::Contains("outside the batch"), Error);
}
