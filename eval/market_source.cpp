#include "eval/episodes.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "kernels/error.h"
#include "tasks/families.h"
#include "tasks/sampler.h"

namespace metatape::eval {

namespace {

constexpr double kYearMs = 365.25 * 24 * 3600 * 1000;

// Distributions that differ only in support size, built on first use.
class DistributionCache {
 public:
  DistributionCache(std::shared_ptr<const tasks::PreparedMarket> market, tasks::DistributionConfig config)
      : market_(std::move(market)), config_(std::move(config)) {}

  const tasks::TaskDistribution& get(std::int64_t support) {
    auto it = cache_.find(support);
    if (it == cache_.end()) {
      tasks::DistributionConfig c = config_;
      c.support_size = support;
      it = cache_.emplace(support, std::make_shared<tasks::TaskDistribution>(market_, c)).first;
    }
    return *it->second;
  }
  std::shared_ptr<const tasks::TaskDistribution> share(std::int64_t support) {
    get(support);
    return cache_.at(support);
  }

 private:
  std::shared_ptr<const tasks::PreparedMarket> market_;
  tasks::DistributionConfig config_;
  std::map<std::int64_t, std::shared_ptr<tasks::TaskDistribution>> cache_;
};

// The meta-training batches of a source: one tasks::Sampler with a sequential key stream, kept while
// the caller hands back the generator state it left (see make_market_sources).
class TrainBatches {
 public:
  TrainBatches(std::shared_ptr<const tasks::TaskDistribution> dist, tasks::SamplerConfig config)
      : dist_(std::move(dist)), config_(std::move(config)) {
    config_.split = tasks::Split::train;
  }

  // The batch of n tasks from gen; with a share (share.batch == n), only its tasks are built.
  tasks::TaskBatch operator()(std::int64_t n, Generator& gen, tasks::SamplerConfig::BatchShare share = {}) {
    std::lock_guard<std::mutex> lock(mutex_);
    const tasks::SamplerConfig::BatchShare& now = config_.share;
    if (!sampler_ || !same_state(sampler_->consumed_keys().state(), gen.state()) || now.batch != share.batch ||
        now.begin != share.begin || now.end != share.end) {
      if (sampler_) finished_ += sampler_->stats();
      sampler_.reset();
      config_.share = share;
      sampler_ = std::make_unique<tasks::Sampler>(dist_, config_, gen);
    }
    tasks::TaskBatch batch = sampler_->next_batch(n);
    gen.set_state(sampler_->consumed_keys().state());
    return batch;
  }

  // Whether a share of each batch can be built alone (no filter that builds tasks to decide).
  bool can_share() const { return config_.min_quality <= 0.0 && !config_.balance_difficulty; }

  tasks::SamplerStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks::SamplerStats s = finished_;
    if (sampler_) s += sampler_->stats();
    return s;
  }

 private:
  static bool same_state(const Generator::State& a, const Generator::State& b) {
    return a.words == b.words && a.has_spare_normal == b.has_spare_normal &&
           (!a.has_spare_normal || a.spare_normal == b.spare_normal);
  }

  std::shared_ptr<const tasks::TaskDistribution> dist_;
  tasks::SamplerConfig config_;
  std::mutex mutex_;
  std::unique_ptr<tasks::Sampler> sampler_;
  tasks::SamplerStats finished_;
};

// The episode of one request: the task (what TaskDistribution::build makes of the same request), its
// place on the axis and, for price direction, the holding return of each query row.
Episode episode_at_request(const tasks::TaskFamily& family, const std::shared_ptr<const tasks::PreparedMarket>& market,
                           const std::string& family_name, const tasks::TaskRequest& raw) {
  Episode e;
  e.task = family.make_task(*market, raw);
  const tasks::TaskRequest request = family.normalise(*market, raw);
  e.context.market = market;
  e.context.request = request;
  const std::int64_t s_last = request.begin + (request.support_size - 1) * request.stride;
  for (std::int64_t i = 0; i < request.support_size; ++i)
    e.context.support_rows.push_back(request.begin + i * request.stride);
  for (std::int64_t j = 0; j < request.query_size; ++j) {
    e.context.query_rows.push_back(s_last + 1 + request.effective_embargo() + j * request.stride);
  }
  const std::int64_t interval = market->market.interval_ms();
  if (interval > 0) {
    e.periods_per_year = kYearMs / static_cast<double>(interval * std::max<std::int64_t>(1, request.stride));
  }
  if (const tasks::FamilyInfo* info = tasks::find_family(family_name);
      info && info->trades_direction && !request.series.empty()) {
    const auto& close = market->market.series[static_cast<std::size_t>(request.series[0])].close;
    const auto last = static_cast<std::int64_t>(close.size()) - 1;
    for (const std::int64_t q : e.context.query_rows) {
      if (q > last) fail("benchmark: query row " + std::to_string(q) + " is past the series end");
      const std::int64_t exit = std::min(last, q + request.stride);
      e.query_returns.push_back(close[static_cast<std::size_t>(exit)] / close[static_cast<std::size_t>(q)] - 1.0);
    }
  }
  return e;
}

}  // namespace

std::vector<FamilySource> make_market_sources(std::shared_ptr<const tasks::PreparedMarket> market,
                                              const tasks::DistributionConfig& config,
                                              const MarketSourceOptions& options) {
  if (config.families.empty()) fail("benchmark: no task family configured (set families: [...])");
  std::vector<FamilySource> out;
  for (const std::string& name : config.families) {
    tasks::DistributionConfig c = config;
    c.families = {name};
    c.query_size = options.query_size;
    auto family = tasks::make_family(name, c.family);
    FamilySource source;
    source.name = name;
    source.kind = family->kind();
    source.num_classes = family->num_classes();
    switch (source.kind) {
      case tasks::TaskKind::classification:
        source.outputs = source.num_classes;
        break;
      case tasks::TaskKind::regression:
        source.outputs = 1;
        break;
      case tasks::TaskKind::portfolio:
        source.outputs = c.family.portfolio_assets;
        break;
    }
    auto cache = std::make_shared<DistributionCache>(market, c);
    const std::int64_t train_support = support_rows(source, static_cast<int>(options.train_shots));
    source.feature_dim = cache->get(train_support).feature_dim();
    if (market->feature_config.is_raw_window()) source.window = market->feature_config.raw_window.length;
    auto batches = std::make_shared<TrainBatches>(cache->share(train_support), options.sampler);
    source.train_batch = [batches](std::int64_t n, Generator& gen) { return (*batches)(n, gen); };
    if (batches->can_share()) {
      source.train_share_batch = [batches](std::int64_t n, dist::Share share, Generator& gen) {
        return (*batches)(n, gen, {n, share.begin, share.end});
      };
    }
    source.train_sampler_stats = [batches] { return batches->stats(); };
    const std::shared_ptr<const tasks::TaskFamily> fam = std::move(family);
    FamilySource shape;  // what support_rows() reads: name, kind, classes
    shape.name = source.name;
    shape.kind = source.kind;
    shape.num_classes = source.num_classes;
    const tasks::TaskDistribution& any = cache->get(train_support);
    source.market = market;
    source.family = fam;
    source.train_rows = any.split_rows(tasks::Split::train);
    source.validation_rows = any.split_rows(tasks::Split::validation);
    source.test_rows = any.split_rows(tasks::Split::test);
    // The groups a task may use: those whose every symbol is configured (tasks.symbols, empty = all).
    for (auto& group : fam->candidates(market->market)) {
      const bool allowed = std::all_of(group.begin(), group.end(), [&](int k) {
        return c.symbols.empty() ||
               std::find(c.symbols.begin(), c.symbols.end(),
                         market->market.series[static_cast<std::size_t>(k)].symbol) != c.symbols.end();
      });
      if (allowed) source.series_groups.push_back(std::move(group));
    }
    source.horizon = c.horizons.empty() ? 0 : c.horizons.front();
    source.embargo = c.embargo;
    source.stride = c.stride;
    const std::string family_name = name;
    source.episode_at = [fam, market, family_name](const tasks::TaskRequest& raw) {
      return episode_at_request(*fam, market, family_name, raw);
    };
    auto drawn_episode = [cache, fam, shape, market, c](tasks::Split split) {
      return [cache, fam, shape, market, c, split](int shots, Generator& gen) {
        const tasks::TaskDistribution& dist = cache->get(support_rows(shape, shots));
        const tasks::TaskKey key = dist.draw(split, gen);
        tasks::TaskRequest request;
        request.series = key.series;
        request.begin = key.begin;
        request.horizon = key.horizon;
        request.support_size = dist.config().support_size;
        request.query_size = dist.config().query_size;
        request.embargo = c.embargo;
        request.stride = c.stride;
        return episode_at_request(*fam, market, shape.name, request);
      };
    };
    source.test_episode = drawn_episode(tasks::Split::test);
    source.validation_episode = drawn_episode(tasks::Split::validation);
    out.push_back(std::move(source));
  }
  return out;
}

}  // namespace metatape::eval
