// Checkpoint selection on the validation split during meta-training (eval/training.h): the best
// validation step's meta-parameters are restored, bit-identical to a run that stops at that step; one
// JSONL row per evaluation; resume across a validation point is bit-identical; select_best off keeps
// the last parameters; the checkpoint and the benchmark's TrainingRecord say what was selected.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "eval/benchmark.h"
#include "eval/report.h"
#include "eval/scoring.h"
#include "eval/training.h"
#include "kernels/error.h"
#include "nn/checkpoint.h"

using namespace metatape;
using namespace metatape::eval;

namespace {

constexpr std::int64_t kFeatures = 3, kClasses = 3;

// Class c sits at a fixed mean for every task (so meta-training learns one classifier), except that
// the validation split labels class c as (c + 1) mod 3: the more meta-training fits the training
// labelling, the worse validation gets, so the first evaluation is the best one.
tasks::Task shifted_task(std::int64_t support, std::int64_t query, bool validation, Generator& gen) {
  auto rows = [&](std::int64_t n, Tensor& x, Tensor& y) {
    std::vector<double> xs;
    std::vector<std::int64_t> ys;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t c = i % kClasses;
      ys.push_back(validation ? (c + 1) % kClasses : c);
      for (std::int64_t f = 0; f < kFeatures; ++f) xs.push_back((f == c ? 2.0 : 0.0) + 0.3 * gen.normal());
    }
    x = Tensor::from_vector(xs, Shape{n, kFeatures});
    y = Tensor::indices(ys);
  };
  tasks::Task t;
  rows(support, t.support_x, t.support_y);
  rows(query, t.query_x, t.query_y);
  t.kind = tasks::TaskKind::classification;
  t.num_classes = kClasses;
  t.family = "shifted";
  return t;
}

FamilySource shifted_family() {
  FamilySource f;
  f.name = "shifted";
  f.kind = tasks::TaskKind::classification;
  f.num_classes = kClasses;
  f.feature_dim = kFeatures;
  f.outputs = kClasses;
  f.train_batch = [](std::int64_t n, Generator& gen) {
    tasks::TaskBatch b;
    for (std::int64_t i = 0; i < n; ++i) b.push_back(shifted_task(6, 9, false, gen));
    return b;
  };
  auto episode = [f](bool validation) {
    return [f, validation](int shots, Generator& gen) {
      Episode e;
      e.task = shifted_task(support_rows(f, shots), 9, validation, gen);
      return e;
    };
  };
  f.test_episode = episode(false);
  f.validation_episode = episode(true);
  return f;
}

BenchmarkConfig tiny_config() {
  BenchmarkConfig c;
  c.learners = {"meta-sgd", "protonet"};
  c.shots = {2};
  c.steps = {1};
  c.episodes = 6;
  c.hidden = {8};
  c.meta_batch = 2;
  c.outer_lr = 0.05;
  c.bootstrap_resamples = 50;
  c.learner_options.maml.inner_lr = 0.01;
  c.learner_options.meta_sgd.alpha_init = 0.01;
  c.diagnose_every = 1000;
  return c;
}

TrainOptions options(std::int64_t steps, std::int64_t every, bool select_best) {
  TrainOptions o;
  o.meta_steps = steps;
  o.meta_batch = 2;
  o.diagnose_every = 1000;
  o.validation.every = every;
  o.validation.episodes = 8;
  o.validation.shots = 2;
  o.validation.seed = 77;
  o.validation.select_best = select_best;
  return o;
}

std::vector<std::vector<float>> values(meta::Learner& l) {
  std::vector<std::vector<float>> out;
  for (const Tensor& t : l.meta_parameters().tensors()) out.push_back(t.to_vector<float>());
  return out;
}
std::vector<std::vector<float>> values(const nn::ParameterList& p) {
  std::vector<std::vector<float>> out;
  for (const Tensor& t : p.tensors()) out.push_back(t.to_vector<float>());
  return out;
}

std::vector<nlohmann::json> validation_rows(const std::filesystem::path& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("split", "") != "validation") continue;
    CHECK(j["seconds"].get<double>() >= 0.0);
    j.erase("seconds");  // wall time: the only field that differs between identical runs
    rows.push_back(j);
  }
  return rows;
}

std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("metatape_selection_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::unique_ptr<meta::Learner> fresh(const FamilySource& f) {
  Generator init(5);
  return make_benchmark_learner("meta-sgd", tiny_config(), f, init);
}

}  // namespace

TEST_CASE("selection: select_best restores the best validation step, bit-identical to stopping there") {
  const FamilySource family = shifted_family();
  const auto dir = fresh_dir("best");
  auto learner = fresh(family);
  Generator tasks(6);
  TrainOptions o = options(12, 3, true);
  o.jsonl_path = (dir / "a.jsonl").string();
  o.checkpoint_path = (dir / "a.ckpt").string();
  SelectionState sel;
  const TrainOutcome out = train_learner(*learner, family, tasks, o, &sel);
  CHECK(out.validation_metric == "log_loss");
  CHECK(out.validations == 4);  // steps 3, 6, 9, 12
  CHECK(out.steps_done == 12);
  REQUIRE(out.selected_step > 0);
  // The constructed shift makes the first evaluation the best: selection did not keep the last step.
  CHECK(out.selected_step == 3);
  CHECK(out.selected_step == sel.best_step);
  CHECK(out.selected_validation_value == sel.best_value);
  CHECK(std::isfinite(out.selected_validation_value));

  // A run that stops at the selected step holds the same meta-parameters, bit for bit.
  auto stopped = fresh(family);
  Generator tasks_b(6);
  train_learner(*stopped, family, tasks_b, options(out.selected_step, 0, true));
  CHECK(values(*learner) == values(*stopped));
  // ... and the validation value recorded is what the stopped learner scores.
  std::vector<Episode> val;
  Generator vgen(77);
  for (int e = 0; e < 8; ++e) val.push_back(family.validation_episode(2, vgen));
  CHECK(validation_value(*stopped, family, val, 77, {}) == out.selected_validation_value);

  // The last step's meta-parameters differ (training went on) and are kept as the training state.
  auto last = fresh(family);
  Generator tasks_c(6);
  train_learner(*last, family, tasks_c, options(12, 0, true));
  CHECK(values(*learner) != values(*last));
  const nn::Checkpoint ck = nn::load_checkpoint(o.checkpoint_path);
  CHECK(values(ck.sections.at("params")) == values(*stopped));
  CHECK(values(ck.sections.at("training.params")) == values(*last));
  CHECK(values(ck.sections.at("validation.best")) == values(*stopped));
  const auto config = nlohmann::json::parse(ck.config_json);
  CHECK(config["selection"]["split"] == "validation");
  CHECK(config["selection"]["metric"] == "log_loss");
  CHECK(config["selection"]["selected_step"] == 3);
  CHECK(config["selection"]["selected_validation_value"].get<double>() == out.selected_validation_value);
  CHECK(config["selection"]["episodes"] == 8);
  CHECK(config["selection"]["shots"] == 2);
  CHECK(config["selection"]["every"] == 3);
  CHECK(config["selection"]["seed"] == 77);
  CHECK(config["selection"]["select_best"] == true);
  CHECK(ck.step == 12);
  // Loading for prediction gets the selected parameters; loading to train on gets the last ones.
  auto predict = fresh(family);
  Generator g1(0);
  resume_learner(o.checkpoint_path, *predict, g1);
  CHECK(values(*predict) == values(*stopped));
  auto train_on = fresh(family);
  Generator g2(0);
  SelectionState restored;
  resume_learner(o.checkpoint_path, *train_on, g2, &restored);
  CHECK(values(*train_on) == values(*last));
  CHECK(restored.best_step == 3);
  CHECK(restored.selected_step == 3);
  CHECK(values(restored.best) == values(*stopped));
  std::filesystem::remove_all(dir);
}

TEST_CASE("selection: one JSONL validation row per evaluation, after the step's metrics line") {
  const FamilySource family = shifted_family();
  const auto dir = fresh_dir("rows");
  auto learner = fresh(family);
  Generator tasks(6);
  TrainOptions o = options(10, 4, true);  // evaluations at 4, 8 and the last step, 10
  o.jsonl_path = (dir / "a.jsonl").string();
  const TrainOutcome out = train_learner(*learner, family, tasks, o);
  CHECK(out.validations == 3);
  const auto rows = validation_rows(dir / "a.jsonl");
  REQUIRE(rows.size() == 3);
  const std::vector<std::int64_t> steps = {4, 8, 10};
  int best = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i]["step"] == steps[i]);
    CHECK(rows[i]["validation_metric"] == "log_loss");
    CHECK(rows[i]["validation_value"].is_number());
    CHECK(rows[i]["diverged"] == 0);
    best += rows[i]["best"].get<bool>() ? 1 : 0;
  }
  CHECK(rows[0]["best"] == true);  // the first evaluation is the best so far by definition
  CHECK(best >= 1);
  // Each validation row follows its step's metrics line.
  std::ifstream in(dir / "a.jsonl");
  std::vector<nlohmann::json> all;
  for (std::string line; std::getline(in, line);) all.push_back(nlohmann::json::parse(line));
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i].value("split", "") != "validation") continue;
    REQUIRE(i > 0);
    CHECK(all[i - 1].contains("query_loss"));
    CHECK(all[i - 1]["step"] == all[i]["step"]);
  }
  // A family without a validation split trains without validation (nothing selected, no rows).
  FamilySource plain = family;
  plain.validation_episode = nullptr;
  auto other = fresh(plain);
  Generator tasks_b(6);
  TrainOptions p = options(4, 2, true);
  p.jsonl_path = (dir / "b.jsonl").string();
  const TrainOutcome none = train_learner(*other, plain, tasks_b, p);
  CHECK(none.validations == 0);
  CHECK(none.selected_step == 0);
  CHECK(none.validation_metric.empty());
  CHECK(validation_rows(dir / "b.jsonl").empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("selection: resume across a validation point selects bit-identically") {
  const FamilySource family = shifted_family();
  const auto dir = fresh_dir("resume");
  auto straight = fresh(family);
  Generator tasks_a(6);
  TrainOptions o = options(12, 3, true);
  o.jsonl_path = (dir / "a.jsonl").string();
  o.checkpoint_path = (dir / "a.ckpt").string();
  SelectionState sa;
  const TrainOutcome a = train_learner(*straight, family, tasks_a, o, &sa);

  // The same run, stopped after step 7 (past the evaluations at 3 and 6): the family raises the
  // interrupt flag while drawing step 7's batch, so the run checkpoints at the top of step 8.
  std::atomic<bool> stop{false};
  FamilySource stopping = family;
  auto calls = std::make_shared<int>(0);
  stopping.train_batch = [inner = family.train_batch, &stop, calls](std::int64_t n, Generator& gen) {
    if (++*calls == 7) stop = true;
    return inner(n, gen);
  };
  auto first = fresh(family);
  Generator tasks_b(6);
  TrainOptions ob = o;
  ob.jsonl_path = (dir / "b.jsonl").string();
  ob.checkpoint_path = (dir / "b.ckpt").string();
  ob.interrupt = &stop;
  const TrainOutcome half = train_learner(*first, stopping, tasks_b, ob);
  REQUIRE(half.interrupted);
  CHECK(half.steps_done == 7);
  CHECK(half.selected_step == 0);  // nothing is selected when interrupted
  // The interrupted checkpoint predicts with the current parameters and keeps the best so far.
  const nn::Checkpoint ck = nn::load_checkpoint(ob.checkpoint_path);
  CHECK(ck.sections.count("validation.best") == 1);
  CHECK(ck.sections.count("training.params") == 0);
  CHECK(values(ck.sections.at("params")) == values(*first));

  // A fresh learner resumes (as train_benchmark_learner does: log cut, history restored) and ends
  // bit-identical: the same selected parameters, the same selection and the same log.
  cut_log_to_step(ob.jsonl_path, 7);
  auto resumed = fresh(family);
  Generator tasks_c(999);
  SelectionState sc;
  resume_learner(ob.checkpoint_path, *resumed, tasks_c, &sc);
  CHECK(sc.best_step == sa.best_step);  // 3 in both: the best evaluation came before the interruption
  TrainOptions oc = ob;
  oc.interrupt = nullptr;
  const TrainOutcome c = train_learner(*resumed, family, tasks_c, oc, &sc);
  CHECK(values(*resumed) == values(*straight));
  CHECK(c.selected_step == a.selected_step);
  CHECK(c.selected_validation_value == a.selected_validation_value);
  CHECK(sc.last_value == sa.last_value);
  const nn::Checkpoint ka = nn::load_checkpoint(o.checkpoint_path), kc = nn::load_checkpoint(oc.checkpoint_path);
  CHECK(ka.config_json == kc.config_json);
  for (const char* section : {"params", "training.params", "validation.best", "optimizer"}) {
    CHECK_MESSAGE(values(ka.sections.at(section)) == values(kc.sections.at(section)), section);
  }
  // The logs hold the same validation rows (the metrics lines differ only in timings).
  const auto ra = validation_rows(dir / "a.jsonl"), rc = validation_rows(dir / "b.jsonl");
  CHECK(ra == rc);

  // Resuming a finished run trains nothing and selects the same again.
  auto again = fresh(family);
  Generator tasks_d(1);
  SelectionState sd;
  resume_learner(oc.checkpoint_path, *again, tasks_d, &sd);
  const TrainOutcome d = train_learner(*again, family, tasks_d, oc, &sd);
  CHECK(d.validations == 0);
  CHECK(d.selected_step == a.selected_step);
  CHECK(values(*again) == values(*straight));
  CHECK(values(nn::load_checkpoint(oc.checkpoint_path).sections.at("training.params")) ==
        values(ka.sections.at("training.params")));

  // Training 5 steps and then extending to 12 selects as the straight run does: step 5 was the last
  // step of the shorter run (evaluated off the grid), not a candidate of the longer one.
  auto piece = fresh(family);
  Generator tasks_e(6);
  TrainOptions oe = o;
  oe.jsonl_path.clear();
  oe.checkpoint_path = (dir / "e.ckpt").string();
  oe.meta_steps = 5;
  SelectionState se;
  train_learner(*piece, family, tasks_e, oe, &se);
  auto extended = fresh(family);
  Generator tasks_f(0);
  SelectionState sf;
  resume_learner(oe.checkpoint_path, *extended, tasks_f, &sf);
  oe.meta_steps = 12;
  const TrainOutcome f = train_learner(*extended, family, tasks_f, oe, &sf);
  CHECK(f.selected_step == a.selected_step);
  CHECK(values(*extended) == values(*straight));

  // Resuming with other validation episodes would compare values of different episodes: refused,
  // naming the keys.
  for (int variant = 0; variant < 3; ++variant) {
    auto other = fresh(family);
    Generator tg(0);
    SelectionState so;
    resume_learner(ob.checkpoint_path, *other, tg, &so);
    TrainOptions changed = oc;
    changed.checkpoint_path.clear();
    changed.jsonl_path.clear();
    if (variant == 0) changed.validation.episodes = 9;
    if (variant == 1) changed.validation.shots = 3;
    if (variant == 2) changed.validation.seed = 78;
    try {
      train_learner(*other, family, tg, changed, &so);
      FAIL("a resume with other validation settings was accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("training.validation_episodes") != std::string::npos);
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("selection: select_best off keeps the last parameters and says which step they are") {
  const FamilySource family = shifted_family();
  auto kept = fresh(family);
  Generator tasks(6);
  const TrainOutcome out = train_learner(*kept, family, tasks, options(12, 3, false));
  CHECK(out.validations == 4);
  CHECK(out.selected_step == 12);
  CHECK(std::isfinite(out.selected_validation_value));
  auto plain = fresh(family);
  Generator tasks_b(6);
  train_learner(*plain, family, tasks_b, options(12, 0, false));
  CHECK(values(*kept) == values(*plain));  // validation itself changes nothing in training
  // Bad options are refused.
  Generator g(1);
  CHECK_THROWS_AS(train_learner(*plain, family, g, options(14, -1, true)), Error);
  TrainOptions none = options(14, 2, true);
  none.validation.episodes = 0;
  CHECK_THROWS_AS(train_learner(*plain, family, g, none), Error);
}

TEST_CASE("selection: the benchmark selects per learner, records it, and eval reads it back") {
  const FamilySource family = shifted_family();
  const auto dir = fresh_dir("benchmark");
  BenchmarkConfig c = tiny_config();
  c.meta_steps = 9;
  c.validate_every = 3;
  c.validation_episodes = 8;
  c.out_dir = dir.string();
  const BenchmarkResult r = run_benchmark(c, {family});
  REQUIRE(r.training.size() == 2);
  for (const TrainingRecord& t : r.training) {
    CAPTURE(t.learner);
    CHECK(t.validation_metric == "log_loss");
    CHECK(t.selected_step >= 3);
    CHECK(t.selected_step <= 9);
    CHECK(std::isfinite(t.selected_validation_value));
    CHECK(validation_rows(t.log_path).size() == 3);
  }
  const auto& meta_sgd = r.training[0];
  CHECK(meta_sgd.learner == "meta-sgd");
  CHECK(meta_sgd.selected_step == 3);
  // The report shows the selected step and its validation value.
  const nlohmann::json j = report_json(r);
  CHECK(j["training"][0]["selected_step"] == 3);
  CHECK(j["training"][0]["validation_metric"] == "log_loss");
  CHECK(j["training"][0]["selected_validation_value"].get<double>() == meta_sgd.selected_validation_value);
  const std::string md = report_markdown(r);
  CHECK(md.find("selected step") != std::string::npos);
  CHECK(md.find("log_loss ") != std::string::npos);

  // `metatape eval`'s path: the learner loaded from its checkpoint holds the selected parameters and
  // the record says which step they are.
  BenchmarkConfig ev = c;
  ev.evaluate_only = true;
  TrainingRecord rec;
  auto loaded = load_benchmark_learner(ev, family, 0, 0, 0, rec);
  CHECK(rec.selected_step == meta_sgd.selected_step);
  CHECK(rec.selected_validation_value == meta_sgd.selected_validation_value);
  CHECK(rec.validation_metric == "log_loss");
  // The selected parameters are those at step 3 of the same seeds: resume with --resume rebuilds them.
  BenchmarkConfig again = c;
  again.resume = true;
  TrainingRecord rec2;
  bool interrupted = false;
  auto re = train_benchmark_learner(again, family, 0, 0, 0, nullptr, 0, nullptr, rec2, interrupted);
  CHECK(values(*re) == values(*loaded));
  CHECK(rec2.selected_step == meta_sgd.selected_step);

  // Refused configurations.
  BenchmarkConfig bad = c;
  bad.validate_every = -1;
  CHECK_THROWS_AS(run_benchmark(bad, {family}), Error);
  bad = c;
  bad.validation_episodes = 0;
  CHECK_THROWS_AS(run_benchmark(bad, {family}), Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("selection: cutting a log back keeps each step's metrics and validation rows") {
  const auto dir = fresh_dir("cut");
  const auto path = dir / "log.jsonl";
  // Steps 3 and 4 with their validation rows, then a resumed segment from step 3 that got to step 5.
  std::ofstream(path) << "{\"step\":3}\n{\"step\":3,\"split\":\"validation\"}\n{\"step\":4}\n"
                         "{\"step\":3,\"again\":1}\n{\"step\":3,\"split\":\"validation\",\"again\":1}\n"
                         "{\"step\":4,\"again\":1}\n{\"step\":4,\"split\":\"validation\",\"again\":1}\n{\"step\":5}\n"
                         "{\"step\":5,\"split\":\"validation\"}\n";
  CHECK(cut_log_to_step(path.string(), 4) == 5);
  std::ifstream in(path);
  std::vector<nlohmann::json> kept;
  for (std::string line; std::getline(in, line);) kept.push_back(nlohmann::json::parse(line));
  REQUIRE(kept.size() == 4);
  CHECK(kept[0] == nlohmann::json({{"step", 3}, {"again", 1}}));
  CHECK(kept[1] == nlohmann::json({{"step", 3}, {"split", "validation"}, {"again", 1}}));
  CHECK(kept[2] == nlohmann::json({{"step", 4}, {"again", 1}}));
  CHECK(kept[3] == nlohmann::json({{"step", 4}, {"split", "validation"}, {"again", 1}}));
  std::filesystem::remove_all(dir);
}
