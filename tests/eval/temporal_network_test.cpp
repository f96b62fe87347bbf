// The temporal encoder through the harness's network factory: built per family from the raw-window
// rows (channels = features / window), every learner kind meta-trains, adapts and predicts on it, and
// indicator rows are refused naming the keys.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/tape.h"
#include "eval/benchmark.h"
#include "eval/methods.h"
#include "eval/run_config.h"
#include "kernels/error.h"
#include "meta/registry.h"
#include "nn/temporal_encoder.h"

using namespace metatape;
using namespace metatape::eval;

namespace {
RunConfig raw_config(const std::string& model) {
  return parse_run_config(
      "data:\n  simulator: {bars: 900, assets: 3, exchanges: 2}\n"
      "tasks:\n  families: [price_direction, arbitrage, portfolio, risk]\n  rebalance: \"4\"\n"
      "  query_size: 8\n  features: raw_window\n  raw_window: {length: 12}\n"
      "training:\n  model: " +
      model + "\n  temporal: {channels: 4, layers: 2, kernel: 3}\n  hidden: [8]\n");
}
}  // namespace

TEST_CASE("temporal network: channels per family, every learner steps, adapts and predicts") {
  const RunConfig config = raw_config("temporal");
  const auto sources = build_sources(config);
  REQUIRE(sources.size() == 4);
  for (const FamilySource& f : sources) {
    CAPTURE(f.name);
    CHECK(f.window == 12);
    const auto model = std::dynamic_pointer_cast<const nn::TemporalEncoder>(make_network(config.benchmark, f, false));
    REQUIRE(model != nullptr);
    const std::int64_t channels = f.name == "arbitrage" ? 6 : f.name == "portfolio" ? 5 * f.outputs : 5;
    CHECK(model->spec().in_channels == channels);
    CHECK(model->out_features() == f.outputs);
    CHECK(make_network(config.benchmark, f, true)->out_features() == 4);
    for (const std::string& kind : meta::learner_names()) {
      if (!learner_fits(kind, f)) continue;
      CAPTURE(kind);
      Generator gen(3);
      auto learner = make_benchmark_learner(kind, config.benchmark, f, gen);
      // Metric learners train on tasks restricted to their support classes, as the harness does.
      const FamilySource source = is_metric_learner(kind) ? with_support_classes_only(f) : f;
      const tasks::TaskBatch batch = source.train_batch(2, gen);
      learner->meta_train_step(batch);
      const nn::ParameterList adapted = learner->adapt(batch[0], 2);
      NoGradGuard no_grad;
      for (double v : learner->predict(adapted, batch[0].query_x).to_vector<double>()) REQUIRE(std::isfinite(v));
    }
  }
  // An MLP reads the same raw-window rows flattened.
  const RunConfig mlp = raw_config("mlp");
  CHECK(make_network(mlp.benchmark, build_sources(mlp).front(), false)->in_features() == 60);
}

TEST_CASE("temporal network: indicator rows are refused naming the keys") {
  RunConfig config = parse_run_config("data:\n  simulator: {bars: 900, assets: 2}\n");
  const auto sources = build_sources(config);
  config.benchmark.model = "temporal";  // past the config reader, which refuses this pairing itself
  CHECK_THROWS_WITH_AS(make_network(config.benchmark, sources.front(), false),
                       doctest::Contains("set tasks.features: raw_window"), Error);
}
