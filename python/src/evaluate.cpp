// metatape.evaluate: the few-shot benchmark harness (eval/benchmark.h) on a market, returning the
// complete report (eval/report.h's report.json) as plain dicts and lists.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "eval/benchmark.h"
#include "eval/report.h"
#include "tasks/families.h"
#include "tasks/sampler.h"

namespace metatape::python {

void init_evaluate(nb::module_& em) {
  em.def(
      "benchmark",
      [](nb::handle market, std::vector<std::string> families, std::vector<std::string> learners,
         std::vector<int> shots, std::vector<int> steps, int episodes, std::int64_t meta_steps,
         std::int64_t meta_batch, int runs, std::uint64_t seed, std::vector<std::int64_t> horizons,
         std::int64_t query_size, std::vector<std::int64_t> hidden, std::int64_t validate_every,
         int selection_episodes, bool walk_forward) {
        std::shared_ptr<const tasks::PreparedMarket> prepared = market_prepared(market, "benchmark: market");
        eval::BenchmarkConfig c;
        c.learners = std::move(learners);
        c.shots = std::move(shots);
        c.steps = std::move(steps);
        c.episodes = episodes;
        c.meta_steps = meta_steps;
        c.meta_batch = meta_batch;
        c.runs = runs;
        c.seed = seed;
        c.hidden = std::move(hidden);
        c.validate_every = validate_every;
        c.selection_episodes = selection_episodes;
        c.walk_forward.enabled = walk_forward;
        tasks::DistributionConfig d;
        d.families = std::move(families);
        d.horizons = std::move(horizons);
        d.query_size = query_size;
        eval::MarketSourceOptions o;
        o.train_shots = c.train_shots;
        o.query_size = query_size;
        std::string text;
        {
          nb::gil_scoped_release release;
          const std::vector<eval::FamilySource> sources = eval::make_market_sources(prepared, d, o);
          eval::BenchmarkResult result = eval::run_benchmark(c, sources);
          result.data_description = "python: metatape.tasks.Market";
          text = eval::report_json(result).dump();
        }
        return nb::borrow<MetricsDict>(nb::module_::import_("json").attr("loads")(text));
      },
      nb::arg("market"), nb::arg("families") = std::vector<std::string>{"price_direction"},
      nb::arg("learners") = std::vector<std::string>{"maml", "meta-sgd", "protonet"},
      nb::arg("shots") = std::vector<int>{1, 5, 10}, nb::arg("steps") = std::vector<int>{1, 5, 10},
      nb::arg("episodes") = 600, nb::arg("meta_steps") = 200, nb::arg("meta_batch") = 8, nb::arg("runs") = 1,
      nb::arg("seed") = 1, nb::arg("horizons") = std::vector<std::int64_t>{4}, nb::arg("query_size") = 20,
      nb::arg("hidden") = std::vector<std::int64_t>{64, 64}, nb::arg("validate_every") = 100,
      nb::arg("selection_episodes") = 100, nb::arg("walk_forward") = true,
      "The few-shot benchmark on a market (docs/evaluation.md): every learner is meta-trained per family, "
      "then it and the baselines are scored on the same test episodes. Returns the report as plain "
      "dicts and lists (report['verdicts'], report['cells'], report['comparisons'] load into "
      "pandas.DataFrame as they are). Releases the GIL; can take minutes with the defaults.");
}

}  // namespace metatape::python
