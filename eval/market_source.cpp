#include "eval/episodes.h"

#include <algorithm>
#include <map>

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

 private:
  std::shared_ptr<const tasks::PreparedMarket> market_;
  tasks::DistributionConfig config_;
  std::map<std::int64_t, std::shared_ptr<tasks::TaskDistribution>> cache_;
};

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
      case tasks::TaskKind::classification: source.outputs = source.num_classes; break;
      case tasks::TaskKind::regression: source.outputs = 1; break;
      case tasks::TaskKind::portfolio: source.outputs = c.family.portfolio_assets; break;
    }
    auto cache = std::make_shared<DistributionCache>(market, c);
    const std::int64_t train_support = support_rows(source, static_cast<int>(options.train_shots));
    source.feature_dim = cache->get(train_support).feature_dim();
    source.train_batch = [cache, train_support](std::int64_t n, Generator& gen) {
      return cache->get(train_support).sample_batch(tasks::Split::train, n, gen);
    };
    const std::shared_ptr<const tasks::TaskFamily> fam = std::move(family);
    const FamilySource shape = source;  // kind and classes, for support_rows
    source.test_episode = [cache, fam, shape, market, c](int shots, Generator& gen) {
      const tasks::TaskDistribution& dist = cache->get(support_rows(shape, shots));
      const tasks::TaskKey key = dist.draw(tasks::Split::test, gen);
      Episode e;
      e.task = dist.build(key);
      tasks::TaskRequest request;
      request.series = key.series;
      request.begin = key.begin;
      request.horizon = key.horizon;
      request.support_size = dist.config().support_size;
      request.query_size = dist.config().query_size;
      request.embargo = c.embargo;
      request.stride = c.stride;
      request = fam->normalise(*market, request);
      const std::int64_t interval = market->market.interval_ms();
      if (interval > 0) {
        e.periods_per_year = kYearMs / static_cast<double>(interval * std::max<std::int64_t>(1, request.stride));
      }
      if (shape.name == "price_direction" && !key.series.empty()) {
        const auto& close = market->market.series[static_cast<std::size_t>(key.series[0])].close;
        const auto last = static_cast<std::int64_t>(close.size()) - 1;
        const std::int64_t s_last = request.begin + (request.support_size - 1) * request.stride;
        for (std::int64_t j = 0; j < request.query_size; ++j) {
          const std::int64_t q = s_last + 1 + request.effective_embargo() + j * request.stride;
          if (q > last) fail("benchmark: query row " + std::to_string(q) + " is past the series end");
          const std::int64_t exit = std::min(last, q + request.stride);
          e.query_returns.push_back(close[static_cast<std::size_t>(exit)] / close[static_cast<std::size_t>(q)] - 1.0);
        }
      }
      return e;
    };
    out.push_back(std::move(source));
  }
  return out;
}

}  // namespace metatape::eval
