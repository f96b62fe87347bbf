// The harness end to end on a fake task family: Gaussian clusters whose class means change per task
// (so meta-learning helps), named "price_direction" so the trading metrics and buy-and-hold run too.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "autograd/tensor.h"
#include "eval/benchmark.h"
#include "eval/methods.h"
#include "eval/report.h"
#include "eval/scoring.h"
#include "eval/training.h"
#include "kernels/error.h"
#include "tests/support/cluster_tasks.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

using test_support::cluster_task;
constexpr std::int64_t kFeatures = test_support::kClusterFeatures, kClasses = test_support::kClusterClasses;

FamilySource fake_family() {
  FamilySource f;
  f.name = "price_direction";
  f.kind = tasks::TaskKind::classification;
  f.num_classes = kClasses;
  f.feature_dim = kFeatures;
  f.outputs = kClasses;
  f.train_batch = [](std::int64_t n, Generator& gen) {
    tasks::TaskBatch b;
    for (std::int64_t i = 0; i < n; ++i) b.push_back(cluster_task(15, 15, gen));
    return b;
  };
  f.test_episode = [f](int shots, Generator& gen) {
    Episode e;
    e.task = cluster_task(support_rows(f, shots), 15, gen);
    for (int i = 0; i < 15; ++i) e.query_returns.push_back(0.01 * gen.normal());
    e.periods_per_year = 8760;
    return e;
  };
  return f;
}

BenchmarkConfig small_config() {
  BenchmarkConfig c;
  c.learners = {"maml", "protonet"};
  c.shots = {1, 5};
  c.steps = {1, 3};
  c.episodes = 24;
  c.meta_steps = 15;
  c.meta_batch = 4;
  c.hidden = {16};
  c.diagnose_every = 5;
  c.bootstrap_resamples = 200;
  c.learner_options.maml.inner_lr = 0.1;
  c.outer_lr = 3e-3;
  return c;
}

const CellResult& find_cell(const BenchmarkResult& r, const std::string& method, int shots, int steps) {
  for (const auto& c : r.cells) {
    if (c.method == method && c.shots == shots && c.steps == steps) return c;
  }
  FAIL("no cell for " << method << " " << shots << "-shot " << steps << " steps");
  return r.cells.front();
}

}  // namespace

TEST_CASE("benchmark: every method on the same episodes, baselines present, comparisons corrected") {
  const auto family = fake_family();
  const BenchmarkResult r = run_benchmark(small_config(), {family});
  CHECK_FALSE(r.interrupted);
  for (const char* base : {"prior", "majority", "persistence", "scratch", "finetune", "buy_and_hold"}) {
    CHECK(std::find(r.baselines.begin(), r.baselines.end(), base) != r.baselines.end());
  }
  // 2 learners + 5 baselines + buy and hold, 2 shots x 2 steps.
  CHECK(r.cells.size() == 8 * 4);
  for (const auto& c : r.cells) {
    for (const auto& [name, v] : c.values) CHECK(v.size() == 24);
  }
  const CellResult& proto = find_cell(r, "protonet", 5, 3);
  const CellResult& zero = find_cell(r, "majority", 5, 3);
  for (const char* m : {"accuracy", "balanced_accuracy", "macro_f1", "trade_sharpe", "trade_turnover"}) {
    CHECK(proto.metrics.count(m) == 1);
  }
  CHECK(find_cell(r, "buy_and_hold", 5, 3).metrics.count("trade_return") == 1);
  CHECK(find_cell(r, "buy_and_hold", 5, 3).metrics.count("accuracy") == 0);
  // Zero-skill predicts one class per episode of a balanced 3-class query: accuracy exactly 1/3.
  CHECK(zero.metrics.at("accuracy").mean == doctest::Approx(1.0 / 3.0));
  // ProtoNets separate well-separated clusters.
  CHECK(proto.metrics.at("accuracy").mean > 0.7);
  // Comparisons: 2 learners x 5 baselines with log loss (prior, majority, persistence, scratch,
  // finetune) x 4 cells.
  CHECK(r.comparisons.size() == 2 * 5 * 4);
  bool found = false;
  for (const auto& c : r.comparisons) {
    CHECK(c.p_t_holm >= c.t_test.p_value);
    CHECK(c.p_wilcoxon_holm >= c.wilcoxon.p_value);
    CHECK(c.pairs == 24);
    if (c.learner == "protonet" && c.baseline == "prior" && c.shots == 5) {
      found = true;
      CHECK(c.significant);
      CHECK(c.learner_better);
      CHECK(c.metric == "log_loss");
      CHECK(c.bootstrap.high < 0.0);  // lower log loss than the baseline
    }
  }
  CHECK(found);
  // Verdicts: one per learner, against the strongest simple baseline; ProtoNets separate the clusters.
  REQUIRE(r.verdicts.size() == 2);
  for (const auto& v : r.verdicts) {
    CHECK(v.steps_selected_on == "fixed");  // the fake family has no validation split
    CHECK(std::find(r.simple_baselines.begin(), r.simple_baselines.end(), v.strongest_baseline) !=
          r.simple_baselines.end());
    if (v.learner == "protonet") CHECK(v.skill);
  }
  // Same seed, same numbers.
  const BenchmarkResult again = run_benchmark(small_config(), {family});
  CHECK(find_cell(again, "maml", 1, 1).values.at("accuracy") == find_cell(r, "maml", 1, 1).values.at("accuracy"));
  CHECK(find_cell(again, "scratch", 5, 3).values.at("accuracy") == find_cell(r, "scratch", 5, 3).values.at("accuracy"));

  // Reports.
  const auto dir = std::filesystem::temp_directory_path() / "metatape_eval_report_test";
  std::filesystem::remove_all(dir);
  write_report(r, dir.string());
  std::ifstream in(dir / "report.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j["cells"].size() == r.cells.size());
  CHECK(j["comparisons"].size() == r.comparisons.size());
  CHECK(j["cells"][0]["metrics"]["accuracy"]["values"].size() == 24);
  const std::string md = report_markdown(r);
  CHECK(md.find("| protonet |") != std::string::npos);
  CHECK(md.find("prior (baseline)") != std::string::npos);
  CHECK(md.find("## Verdicts") != std::string::npos);
  CHECK(md.find("p (t, Holm)") != std::string::npos);
  std::stringstream csv(comparisons_csv(r));
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  CHECK(lines == 1 + static_cast<int>(r.comparisons.size()));
  std::filesystem::remove_all(dir);
}

TEST_CASE("benchmark: bad configurations are refused with clear messages") {
  const auto family = fake_family();
  BenchmarkConfig c = small_config();
  c.shots = {};
  CHECK_THROWS_WITH_AS(run_benchmark(c, {family}), doctest::Contains("shots is empty"), Error);
  c = small_config();
  c.episodes = 1;
  CHECK_THROWS_WITH_AS(run_benchmark(c, {family}), doctest::Contains("episodes must be >= 2"), Error);
  c = small_config();
  c.learners = {"protonet"};
  FamilySource reg = family;
  reg.kind = tasks::TaskKind::regression;
  CHECK_THROWS_WITH_AS(run_benchmark(c, {reg}), doctest::Contains("no configured learner fits"), Error);
  c.learners = {"maml", "nonsense"};
  CHECK_THROWS_AS(run_benchmark(c, {family}), Error);
}

TEST_CASE("training: JSONL monitoring, gradient diagnostics, bit-identical resume, interruption") {
  const auto family = fake_family();
  BenchmarkConfig c = small_config();
  const auto dir = std::filesystem::temp_directory_path() / "metatape_eval_train_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  Generator init_a(5), tasks_a(6);
  auto a = make_benchmark_learner("maml", c, family, init_a);
  TrainOptions opt;
  opt.meta_steps = 6;
  opt.meta_batch = 3;
  opt.diagnose_every = 3;
  opt.jsonl_path = (dir / "a.jsonl").string();
  const TrainOutcome straight = train_learner(*a, family, tasks_a, opt);
  CHECK(straight.steps_done == 6);
  CHECK_FALSE(straight.interrupted);

  std::ifstream log(dir / "a.jsonl");
  std::string line;
  int steps = 0, diagnostics = 0;
  while (std::getline(log, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("diagnostics")) {
      ++diagnostics;
      CHECK(j["grad_norms"].contains("layer0.weight"));
      CHECK(j["update_norms"]["layer0.weight"].get<double>() > 0.0);
    } else {
      ++steps;
      for (const char* k : {"query_loss", "accuracy", "grad_norm", "tasks_per_second", "adaptation_ms"})
        CHECK(j.contains(k));
    }
  }
  CHECK(steps == 6);
  CHECK(diagnostics == 3);  // steps 0, 3 and the last

  // Interrupted after 3 steps (the flag is raised by the progress callback's owner; here directly).
  Generator init_b(5), tasks_b(6);
  auto b = make_benchmark_learner("maml", c, family, init_b);
  TrainOptions half = opt;
  half.jsonl_path.clear();
  half.meta_steps = 3;
  half.checkpoint_path = (dir / "b.ckpt").string();
  train_learner(*b, family, tasks_b, half);
  std::atomic<bool> stop{true};
  half.meta_steps = 6;
  half.interrupt = &stop;
  const TrainOutcome interrupted = train_learner(*b, family, tasks_b, half);
  CHECK(interrupted.interrupted);
  CHECK(interrupted.steps_done == 3);

  // A fresh learner resumes from the checkpoint and ends bit-identical to the straight run.
  Generator init_c(99), tasks_c(1234);
  auto resumed = make_benchmark_learner("maml", c, family, init_c);
  resume_learner(half.checkpoint_path, *resumed, tasks_c);
  CHECK(resumed->meta_steps() == 3);
  TrainOptions rest = half;
  rest.interrupt = nullptr;
  train_learner(*resumed, family, tasks_c, rest);
  const auto& pa = a->meta_parameters();
  const auto& pr = resumed->meta_parameters();
  REQUIRE(pa.size() == pr.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CHECK_MESSAGE(pa[i].to_vector<float>() == pr[i].to_vector<float>(), pa.name(i));
  }
  // A checkpoint of another architecture is refused.
  BenchmarkConfig wide = c;
  wide.hidden = {8};
  Generator g(1);
  auto other = make_benchmark_learner("maml", wide, family, g);
  CHECK_THROWS_AS(resume_learner(half.checkpoint_path, *other, g), Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("baselines: SGD snapshots per step count") {
  FamilySource f = fake_family();
  Generator gen(3);
  Episode e = f.test_episode(2, gen);
  // SGD outputs at 0 steps equal the network at its start; more steps lower the support loss.
  BenchmarkConfig c = small_config();
  auto net = make_network(c, f, false);
  const nn::ParameterList start = net->init(gen);
  const auto snaps = sgd_query_outputs(*net, start, e.task, 0.1, {0, 3});
  Tensor direct;
  {
    NoGradGuard ng;
    direct = net->forward(start, e.task.query_x);
  }
  const auto d = direct.to_vector<double>();
  REQUIRE(snaps[0].size() == d.size());
  for (std::size_t i = 0; i < d.size(); ++i) CHECK(snaps[0][i] == doctest::Approx(d[i]));
  CHECK(snaps[1] != snaps[0]);
}
