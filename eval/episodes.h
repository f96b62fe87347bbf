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
#include "tasks/task.h"

namespace metatape::tasks {
class TaskDistribution;
struct DistributionConfig;
struct PreparedMarket;
}  // namespace metatape::tasks

namespace metatape::eval {

struct Episode {
  tasks::Task task;
  std::vector<double> query_returns;  // price direction only: one simple return per query row
  double periods_per_year = 8760.0;
};

struct FamilySource {
  std::string name;  // "price_direction", "market_regime", "arbitrage", "portfolio", "risk", ...
  tasks::TaskKind kind = tasks::TaskKind::classification;
  std::int64_t num_classes = 0;
  std::int64_t feature_dim = 0;
  std::int64_t outputs = 0;  // model output width: classes, regression outputs or assets
  // A meta-training batch of n tasks (support size set by the training shots), drawn from gen.
  std::function<tasks::TaskBatch(std::int64_t n, Generator& gen)> train_batch;
  // One test episode with `shots` support rows per class (per output for regression), from gen.
  std::function<Episode(int shots, Generator& gen)> test_episode;
};

// Support rows for a shots value: shots * classes for classification, shots otherwise (at least 2,
// which the portfolio loss needs).
std::int64_t support_rows(const FamilySource& family, int shots);

struct MarketSourceOptions {
  std::int64_t train_shots = 5;   // support rows of meta-training tasks follow support_rows()
  std::int64_t query_size = 20;
};

// One FamilySource per family in `config.families`, all on the same prepared market. The
// distribution's own support_size is ignored: it is set per shots value.
std::vector<FamilySource> make_market_sources(std::shared_ptr<const tasks::PreparedMarket> market,
                                              const tasks::DistributionConfig& config,
                                              const MarketSourceOptions& options);

}  // namespace metatape::eval
