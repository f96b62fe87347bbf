// Episodes: what the benchmark trains on and scores on, per task family.
//
// A FamilySource hands out meta-training batches and test episodes. An Episode is a task plus what
// the family's metrics need beyond the labels: for price direction, the simple return earned by
// holding the asset from each query decision row to the next one (the trading simulation); for every
// family, the number of decision periods per year (annualisation).
//
// make_market_source builds a source from tasks::TaskDistribution (train split for meta-training, test
// split for episodes). Query holding returns are recomputed from the market's close prices with the
// row layout documented in tasks/families.h (q_j = s_last + 1 + embargo + j * stride), holding each
// position for `stride` bars (clamped to the last bar of the series).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "dist/communicator.h"
#include "tasks/families.h"
#include "tasks/sampler.h"
#include "tasks/task.h"

namespace metatape::eval {

// Where a market episode sits on its market's common time axis, so that baselines and the
// walk-forward evaluation can read the raw bars known at each decision time. Contract for every
// reader: at decision row t only bars 0..t may be used (the row's features obey the same rule);
// support labels are known at the first query row (embargo >= horizon). `market` is null for
// synthetic episodes (Gaussian classes, sinusoids), which have no time axis.
struct EpisodeContext {
  std::shared_ptr<const tasks::PreparedMarket> market;
  tasks::TaskRequest request;                          // normalised by the family (tasks/families.h)
  std::vector<std::int64_t> support_rows, query_rows;  // decision rows, increasing
};

struct Episode {
  tasks::Task task;
  std::vector<double> query_returns;  // price direction only: one simple return per query row
  double periods_per_year = 8760.0;
  EpisodeContext context;
};

struct FamilySource {
  std::string name;  // "price_direction", "market_regime", "arbitrage", "portfolio", "risk", ...
  tasks::TaskKind kind = tasks::TaskKind::classification;
  std::int64_t num_classes = 0;
  std::int64_t feature_dim = 0;
  // Raw-window rows (tasks.features: raw_window): time steps per row, a row being (feature_dim /
  // window channels, window) channel-major (tasks/raw_window.h); 0 for indicator features.
  std::int64_t window = 0;
  std::int64_t outputs = 0;  // model output width: classes, regression outputs or assets
  // A meta-training batch of n tasks (support size set by the training shots), drawn from gen.
  std::function<tasks::TaskBatch(std::int64_t n, Generator& gen)> train_batch;
  // Data parallelism: train_batch with only tasks [share.begin, share.end) built, the others shells
  // (tasks::SamplerConfig::share: kind and num_classes set, tensors undefined); the same draws and the
  // same gen state as train_batch. Empty when the source cannot (no sampler, or a quality filter or
  // difficulty balancing that must build every task to decide): callers then use train_batch.
  std::function<tasks::TaskBatch(std::int64_t n, dist::Share share, Generator& gen)> train_share_batch;
  // Market sources: the counters of the tasks::Sampler behind train_batch, summed over its restarts
  // (empty function for synthetic sources).
  std::function<tasks::SamplerStats()> train_sampler_stats;
  // One test episode with `shots` support rows per class (per output for regression), from gen.
  std::function<Episode(int shots, Generator& gen)> test_episode;
  // The same from the validation split (model selection); empty for synthetic sources.
  std::function<Episode(int shots, Generator& gen)> validation_episode;

  // Market sources only (null / empty otherwise): the prepared market, the family, the row ranges
  // [begin, end) of the three forward-in-time splits on the common axis, the series groups a task may
  // use, and an episode built at an explicit request (walk-forward evaluation, baselines' fits).
  std::shared_ptr<const tasks::PreparedMarket> market;
  std::shared_ptr<const tasks::TaskFamily> family;
  std::pair<std::int64_t, std::int64_t> train_rows{0, 0}, validation_rows{0, 0}, test_rows{0, 0};
  std::vector<std::vector<int>> series_groups;
  std::int64_t horizon = 0, embargo = 0, stride = 1;  // of the distribution (embargo 0 = horizon)
  std::function<Episode(const tasks::TaskRequest& request)> episode_at;
};

// Support rows for a shots value: shots * classes for classification, shots otherwise (at least 2,
// which the portfolio loss needs).
std::int64_t support_rows(const FamilySource& family, int shots);

struct MarketSourceOptions {
  std::int64_t train_shots = 5;  // support rows of meta-training tasks follow support_rows()
  std::int64_t query_size = 20;
  // How train_batch builds its tasks: workers, prefetch, cache_dir, min_quality, balance_difficulty
  // (seed and split are not used: see make_market_sources).
  tasks::SamplerConfig sampler = [] {
    tasks::SamplerConfig s;
    s.workers = 0;
    s.prefetch = 0;
    return s;
  }();
};

// One FamilySource per family in `config.families`, all on the same prepared market. The
// distribution's own support_size is ignored: it is set per shots value.
// train_batch(n, gen) draws through a tasks::Sampler with a sequential key stream started at gen (so
// the tasks are the draws of gen, whatever options.sampler's workers and prefetch) and leaves gen
// where the sampler's consumed keys end: with min_quality 0 and no balancing, the same tasks in the
// same order and the same gen state as TaskDistribution::sample_batch(train, n, gen). The sampler
// reads ahead while gen is the one it left; a call with any other gen state restarts it there.
std::vector<FamilySource> make_market_sources(std::shared_ptr<const tasks::PreparedMarket> market,
                                              const tasks::DistributionConfig& config,
                                              const MarketSourceOptions& options);

}  // namespace metatape::eval
