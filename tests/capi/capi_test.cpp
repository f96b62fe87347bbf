// The C API: adapt/predict from a checkpoint agree with the C++ learner, many threads adapt one
// loaded model concurrently, every error path returns its code and a message, and the C example
// program runs on a checkpoint.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "autograd/tape.h"
#include "capi/inference_model.h"
#include "eval/benchmark.h"
#include "capi/metatape.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/checkpoint.h"
#include "nn/mlp.h"
#include "tasks/sinusoid.h"
#include "tests/support/cluster_tasks.h"

using namespace metatape;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("metatape_capi_test_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

struct Trained {
  std::string path;
  std::unique_ptr<meta::Learner> learner;
};

// A small learner meta-trained for a few steps and saved with meta::save_learner.
Trained write_checkpoint(const std::string& kind, const std::vector<std::int64_t>& sizes,
                         const std::string& extra = R"({"task_kind": "regression"})", int meta_steps = 3) {
  nn::MlpSpec spec;
  spec.sizes = sizes;
  auto mlp = std::make_shared<const nn::Mlp>(spec);
  Generator gen(11);
  meta::LearnerOptions options;
  options.maml.inner_steps = 2;
  options.maml.inner_lr = 0.02;
  Trained t;
  t.learner = meta::make_learner(kind, mlp, mlp->init(gen), nn::make_adam({}), options);
  if (kind != "protonet" && kind != "matching") {
    tasks::SinusoidOptions so;
    for (int s = 0; s < meta_steps; ++s) t.learner->meta_train_step(tasks::sample_sinusoid_batch(gen, 2, so), {false});
  }
  t.path = (temp_dir() / (kind + "_" + std::to_string(sizes.front()) + ".ckpt")).string();
  meta::save_learner(t.path, *t.learner, &gen, extra);
  return t;
}

std::vector<float> sine_x(int rows, float offset) {
  std::vector<float> x(static_cast<std::size_t>(rows));
  for (int i = 0; i < rows; ++i)
    x[static_cast<std::size_t>(i)] = -4.5f + 9.0f * static_cast<float>(i) / static_cast<float>(rows) + offset;
  return x;
}
std::vector<float> sine_y(const std::vector<float>& x, float amplitude) {
  std::vector<float> y;
  for (float v : x) y.push_back(amplitude * std::sin(v - 0.3f));
  return y;
}

mt_model* load_ok(const std::string& path) {
  mt_model* model = nullptr;
  const mt_status s = mt_model_load(path.c_str(), &model);
  INFO(mt_last_error());
  REQUIRE(s == MT_OK);
  REQUIRE(model != nullptr);
  return model;
}

// Expects `status` == `want` and a message that contains `needle`.
void expect_error(mt_status status, mt_status want, const std::string& needle) {
  const std::string message = mt_last_error();
  INFO("status " << mt_status_name(status) << ", message: " << message);
  CHECK(status == want);
  CHECK(message.find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("capi: version and status names") {
  CHECK(std::string(mt_version()) == "0.1.0");
  CHECK(std::string(mt_status_name(MT_ERR_SHAPE)) == "MT_ERR_SHAPE");
  CHECK(std::string(mt_status_name(99)) == "unknown status");
}

TEST_CASE("capi: adapt and predict from a checkpoint match the C++ learner") {
  for (const std::string kind : {"maml", "meta-sgd", "reptile", "anil"}) {
    CAPTURE(kind);
    Trained t = write_checkpoint(kind, {1, 16, 16, 1});
    mt_model* model = load_ok(t.path);
    mt_model_info info{};
    REQUIRE(mt_model_info_get(model, &info) == MT_OK);
    CHECK(info.in_features == 1);
    CHECK(info.out_features == 1);
    CHECK(info.task_kind == MT_TASK_REGRESSION);
    CHECK(std::string(info.learner) == t.learner->name());
    CHECK(info.default_steps == t.learner->default_adapt_steps());
    CHECK(info.meta_steps == t.learner->meta_steps());

    const auto x = sine_x(10, 0.0f), y = sine_y(x, 2.0f), qx = sine_x(7, 0.2f);
    mt_adapted* adapted = nullptr;
    REQUIRE(mt_adapt(model, x.data(), 10, 1, y.data(), 1, 3, &adapted) == MT_OK);
    CHECK(mt_adapted_bytes(adapted) == (16 + 16 + 16 * 16 + 16 + 16 + 1) * 4);
    std::vector<float> out(7);
    std::int64_t columns = 0;
    REQUIRE(mt_predict(adapted, qx.data(), 7, 1, out.data(), 7, &columns) == MT_OK);
    CHECK(columns == 1);

    tasks::Task task;
    task.kind = tasks::TaskKind::regression;
    task.support_x = Tensor::from_vector(x, Shape{10, 1});
    task.support_y = Tensor::from_vector(y, Shape{10, 1});
    task.query_x = task.support_x;
    task.query_y = task.support_y;
    const nn::ParameterList direct = t.learner->adapt(task, 3);
    NoGradGuard no_grad;
    const auto expect = t.learner->predict(direct, Tensor::from_vector(qx, Shape{7, 1})).to_vector<float>();
    for (int i = 0; i < 7; ++i) CHECK(out[static_cast<std::size_t>(i)] == expect[static_cast<std::size_t>(i)]);

    // Adaptation changes the prediction (the support set is not what the initialisation fits).
    mt_adapted* zero = nullptr;
    REQUIRE(mt_adapt(model, x.data(), 10, 1, y.data(), 1, 0, &zero) == MT_OK);
    std::vector<float> out0(7);
    REQUIRE(mt_predict(zero, qx.data(), 7, 1, out0.data(), 7, &columns) == MT_OK);
    if (kind != "anil") CHECK(out0 != out);
    mt_adapted_free(zero);
    // The adapted handle keeps the model alive.
    mt_model_free(model);
    std::vector<float> again(7);
    REQUIRE(mt_predict(adapted, qx.data(), 7, 1, again.data(), 7, &columns) == MT_OK);
    CHECK(again == out);
    mt_adapted_free(adapted);
  }
}

TEST_CASE("capi: a config holding only the learner's options (eval::train_learner) names its learner") {
  // Every registered learner (meta/registry.h), so a new one cannot be added without its inference.
  for (const std::string& kind : meta::learner_names()) {
    CAPTURE(kind);
    Trained t = write_checkpoint(kind, {2, 8, 3}, "{}", 0);
    nn::Checkpoint cp;
    cp.config_json = t.learner->config_json();
    cp.sections["params"] = t.learner->meta_parameters();
    const std::string path = (temp_dir() / ("options_only_" + kind + ".ckpt")).string();
    nn::save_checkpoint(path, cp);
    mt_model* model = load_ok(path);
    mt_model_info info{};
    REQUIRE(mt_model_info_get(model, &info) == MT_OK);
    CHECK(std::string(info.learner) == kind);
    mt_model_free(model);
  }
}

TEST_CASE("capi: a checkpoint naming a learner the registry does not know is refused with the names") {
  Trained t = write_checkpoint("maml", {2, 8, 3}, "{}", 0);
  nn::Checkpoint cp = nn::load_checkpoint(t.path);
  auto config = nlohmann::json::parse(cp.config_json);
  config["learner"] = "alchemy";
  cp.config_json = config.dump();
  const std::string path = (temp_dir() / "unknown_learner.ckpt").string();
  nn::save_checkpoint(path, cp);
  mt_model* model = nullptr;
  expect_error(mt_model_load(path.c_str(), &model), MT_ERR_CHECKPOINT,
               "names learner 'alchemy', not one of " + meta::learner_names_text(", ", " or "));
  CHECK(model == nullptr);
}

TEST_CASE("capi: metric learners classify from labels") {
  Trained t = write_checkpoint("protonet", {4, 8, 3}, "{}");
  mt_model* model = load_ok(t.path);
  mt_model_info info{};
  REQUIRE(mt_model_info_get(model, &info) == MT_OK);
  CHECK(info.task_kind == MT_TASK_CLASSIFICATION);
  // Three well separated classes: class c at (c, c, c, c) * 3 plus small offsets.
  std::vector<float> x, y;
  for (int r = 0; r < 9; ++r) {
    for (int f = 0; f < 4; ++f) x.push_back(3.0f * static_cast<float>(r % 3) + 0.01f * static_cast<float>(r + f));
    y.push_back(static_cast<float>(r % 3));
  }
  mt_adapted* adapted = nullptr;
  REQUIRE(mt_adapt(model, x.data(), 9, 4, y.data(), 1, -1, &adapted) == MT_OK);
  std::vector<float> out(9 * 3);
  std::int64_t columns = 0;
  REQUIRE(mt_predict(adapted, x.data(), 9, 4, out.data(), 27, &columns) == MT_OK);
  CHECK(columns == 3);
  for (int r = 0; r < 9; ++r) {
    int best = 0;
    for (int c = 1; c < 3; ++c)
      if (out[static_cast<std::size_t>(r * 3 + c)] > out[static_cast<std::size_t>(r * 3 + best)]) best = c;
    CHECK(best == r % 3);
  }
  // A label that is not an integer is refused, naming the element.
  y[4] = 1.5f;
  mt_adapted* bad = nullptr;
  expect_error(mt_adapt(model, x.data(), 9, 4, y.data(), 1, -1, &bad), MT_ERR_INVALID_ARGUMENT, "y[4,0]");
  CHECK(bad == nullptr);
  // Regression is refused for a metric learner.
  expect_error(mt_model_set_task(model, MT_TASK_REGRESSION, 0), MT_ERR_INVALID_ARGUMENT, "classification");
  mt_adapted_free(adapted);
  mt_model_free(model);
}

TEST_CASE("capi: many threads adapting concurrently on one model give the serial results") {
  Trained t = write_checkpoint("maml", {1, 16, 16, 1});
  mt_model* model = load_ok(t.path);
  constexpr int threads = 8, per_thread = 12;
  const auto qx = sine_x(5, 0.1f);
  auto run = [&](int job, std::vector<float>& out) {
    const auto x = sine_x(10, 0.05f * static_cast<float>(job));
    const auto y = sine_y(x, 0.5f + 0.1f * static_cast<float>(job));
    mt_adapted* adapted = nullptr;
    if (mt_adapt(model, x.data(), 10, 1, y.data(), 1, 2, &adapted) != MT_OK) return false;
    out.assign(5, 0.0f);
    std::int64_t columns = 0;
    const bool ok = mt_predict(adapted, qx.data(), 5, 1, out.data(), 5, &columns) == MT_OK;
    mt_adapted_free(adapted);
    return ok;
  };
  std::vector<std::vector<float>> serial(threads * per_thread), parallel(threads * per_thread);
  for (int j = 0; j < threads * per_thread; ++j) REQUIRE(run(j, serial[static_cast<std::size_t>(j)]));
  std::vector<int> failures(threads, 0);
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k) {
    pool.emplace_back([&, k] {
      for (int i = 0; i < per_thread; ++i) {
        const int job = i * threads + k;
        if (!run(job, parallel[static_cast<std::size_t>(job)])) ++failures[static_cast<std::size_t>(k)];
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int k = 0; k < threads; ++k) CHECK(failures[static_cast<std::size_t>(k)] == 0);
  // Bit-identical: an adapt is deterministic whatever thread runs it. (Before -ffp-contract=off, see
  // the top-level CMakeLists.txt, GCC's FMA contraction made the Release build differ in the last bit.)
  for (int j = 0; j < threads * per_thread; ++j) {
    CHECK_MESSAGE(parallel[static_cast<std::size_t>(j)] == serial[static_cast<std::size_t>(j)], "job ", j);
  }
  mt_model_free(model);
}

TEST_CASE("capi: every error path returns a code and a message") {
  Trained t = write_checkpoint("maml", {2, 8, 1}, R"({"task_kind": "regression"})", 0);
  mt_model* model = nullptr;

  SUBCASE("loading") {
    expect_error(mt_model_load(t.path.c_str(), nullptr), MT_ERR_INVALID_ARGUMENT, "out_model");
    expect_error(mt_model_load(nullptr, &model), MT_ERR_INVALID_ARGUMENT, "checkpoint_path");
    expect_error(mt_model_load((temp_dir() / "missing.ckpt").c_str(), &model), MT_ERR_CHECKPOINT, "missing.ckpt");
    CHECK(model == nullptr);
    const std::string garbage = (temp_dir() / "garbage.ckpt").string();
    std::ofstream(garbage) << "this is not a checkpoint at all, just some text";
    expect_error(mt_model_load(garbage.c_str(), &model), MT_ERR_CHECKPOINT, "garbage.ckpt");
    // A valid checkpoint file whose config names no learner.
    nn::Checkpoint cp;
    cp.config_json = R"({"note": "no learner here"})";
    cp.sections["params"] = t.learner->meta_parameters();
    const std::string plain = (temp_dir() / "plain.ckpt").string();
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "no model description");
    cp.config_json = R"({"model": "mlp 2-8-1 relu f32", "unrelated": 1})";
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "names no learner");
    // A learner whose model description does not match the saved parameters.
    cp.config_json = R"({"learner": "maml", "options": {"model": "mlp 3-8-1 relu f32"}})";
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "plain.ckpt");
    cp.config_json = R"({"learner": "maml", "options": {"model": "mlp 2-x-1 relu f32"}})";
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "bad layer size");
    // A temporal encoder's checkpoint is named and refused, not misread as an MLP.
    cp.config_json =
        R"({"learner": "maml", "options": {"model": "temporal 5x32 channels=16 layers=4 kernel=3 relu head=3 f32"}})";
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "is a temporal encoder");
    cp.config_json = R"({"learner": "nope", "options": {"model": "mlp 2-8-1 relu f32"}})";
    nn::save_checkpoint(plain, cp);
    expect_error(mt_model_load(plain.c_str(), &model), MT_ERR_CHECKPOINT, "nope");
    CHECK(model == nullptr);
  }

  SUBCASE("adapt and predict") {
    model = load_ok(t.path);
    const std::vector<float> x = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};  // 3 rows x 2
    std::vector<float> y = {1.0f, 2.0f, 3.0f};
    mt_adapted* adapted = nullptr;
    expect_error(mt_adapt(model, x.data(), 3, 2, y.data(), 1, 1, nullptr), MT_ERR_INVALID_ARGUMENT, "out_adapted");
    expect_error(mt_adapt(nullptr, x.data(), 3, 2, y.data(), 1, 1, &adapted), MT_ERR_INVALID_ARGUMENT, "model");
    expect_error(mt_adapt(model, nullptr, 3, 2, y.data(), 1, 1, &adapted), MT_ERR_INVALID_ARGUMENT,
                 "x must not be null");
    expect_error(mt_adapt(model, x.data(), 3, 2, nullptr, 1, 1, &adapted), MT_ERR_INVALID_ARGUMENT,
                 "y must not be null");
    expect_error(mt_adapt(model, x.data(), 0, 2, y.data(), 1, 1, &adapted), MT_ERR_SHAPE, "at least 1 row");
    expect_error(mt_adapt(model, x.data(), 2, 3, y.data(), 1, 1, &adapted), MT_ERR_SHAPE, "expects 2");
    expect_error(mt_adapt(model, x.data(), 3, 2, y.data(), 2, 1, &adapted), MT_ERR_SHAPE, "columns");
    expect_error(mt_adapt(model, x.data(), 3, 2, y.data(), 1, 100000, &adapted), MT_ERR_INVALID_ARGUMENT, "steps");
    std::vector<float> bad_x = x;
    bad_x[3] = std::numeric_limits<float>::quiet_NaN();
    expect_error(mt_adapt(model, bad_x.data(), 3, 2, y.data(), 1, 1, &adapted), MT_ERR_NON_FINITE, "x[1,1] is NaN");
    y[2] = std::numeric_limits<float>::infinity();
    expect_error(mt_adapt(model, x.data(), 3, 2, y.data(), 1, 1, &adapted), MT_ERR_NON_FINITE, "y[2,0] is infinite");
    CHECK(adapted == nullptr);
    y[2] = 3.0f;
    REQUIRE(mt_adapt(model, x.data(), 3, 2, y.data(), 1, 1, &adapted) == MT_OK);

    std::vector<float> out(3);
    std::int64_t columns = 0;
    expect_error(mt_predict(nullptr, x.data(), 3, 2, out.data(), 3, &columns), MT_ERR_INVALID_ARGUMENT, "adapted");
    expect_error(mt_predict(adapted, nullptr, 3, 2, out.data(), 3, &columns), MT_ERR_INVALID_ARGUMENT, "x");
    expect_error(mt_predict(adapted, x.data(), 3, 2, nullptr, 3, &columns), MT_ERR_INVALID_ARGUMENT, "out");
    expect_error(mt_predict(adapted, x.data(), 3, 2, out.data(), 3, nullptr), MT_ERR_INVALID_ARGUMENT, "out_columns");
    expect_error(mt_predict(adapted, x.data(), 3, 1, out.data(), 3, &columns), MT_ERR_SHAPE, "expects 2");
    expect_error(mt_predict(adapted, x.data(), 0, 2, out.data(), 3, &columns), MT_ERR_SHAPE, "at least 1 row");
    expect_error(mt_predict(adapted, x.data(), 3, 2, out.data(), 2, &columns), MT_ERR_BUFFER_TOO_SMALL,
                 "needs 3 floats");
    expect_error(mt_predict(adapted, bad_x.data(), 3, 2, out.data(), 3, &columns), MT_ERR_NON_FINITE, "x[1,1]");
    CHECK(mt_predict(adapted, x.data(), 3, 2, out.data(), 3, &columns) == MT_OK);
    // A successful call leaves the last message alone; errors are per thread.
    const std::string before = mt_last_error();
    std::string other;
    std::thread([&] { other = mt_last_error(); }).join();
    CHECK(other.empty());
    CHECK(std::string(mt_last_error()) == before);
    mt_adapted_free(adapted);

    mt_model_info info{};
    expect_error(mt_model_info_get(nullptr, &info), MT_ERR_INVALID_ARGUMENT, "model");
    expect_error(mt_model_info_get(model, nullptr), MT_ERR_INVALID_ARGUMENT, "out_info");
    expect_error(mt_model_set_task(nullptr, MT_TASK_REGRESSION, 0), MT_ERR_INVALID_ARGUMENT, "model");
    expect_error(mt_model_set_task(model, 7, 0), MT_ERR_INVALID_ARGUMENT, "unknown task kind");
    expect_error(mt_model_set_task(model, MT_TASK_CLASSIFICATION, -1), MT_ERR_INVALID_ARGUMENT, "num_classes");
    // The checkpoint records task_kind regression: another kind contradicts it.
    expect_error(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 5), MT_ERR_INVALID_ARGUMENT,
                 "the checkpoint records task kind 'regression'; 'classification' contradicts it");
    CHECK(mt_model_set_task(model, MT_TASK_REGRESSION, 0) == MT_OK);
    mt_model_free(model);
    // With no recorded kind any kind may be chosen, but the class count must fit the logits.
    Trained plain = write_checkpoint("maml", {2, 8, 1}, "{}", 0);
    model = load_ok(plain.path);
    expect_error(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 5), MT_ERR_INVALID_ARGUMENT, "1 logits");
    CHECK(mt_model_set_task(model, MT_TASK_PORTFOLIO, 0) == MT_OK);
    mt_model_free(model);
    mt_model_free(nullptr);
    mt_adapted_free(nullptr);
    CHECK(mt_adapted_bytes(nullptr) == 0);
  }
}

TEST_CASE("capi: the C example program adapts and predicts from a checkpoint") {
  Trained t = write_checkpoint("maml", {1, 16, 16, 1});
  const fs::path self = fs::read_symlink("/proc/self/exe");
  const fs::path example = self.parent_path().parent_path() / "capi" / "metatape_capi_example";
  REQUIRE_MESSAGE(fs::exists(example), "build the target metatape_capi_example: " << example);
  const std::string out = (temp_dir() / "example.txt").string();
  const int rc = std::system((example.string() + " " + t.path + " > " + out + " 2>&1").c_str());
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(text);
  CHECK(rc == 0);
  CHECK(text.find("learner maml") != std::string::npos);
  CHECK(text.find("first adapted prediction") != std::string::npos);
  const int bad =
      std::system((example.string() + " " + (temp_dir() / "missing.ckpt").string() + " > " + out + " 2>&1").c_str());
  CHECK(bad != 0);
}

namespace {

using test_support::cluster_task;
constexpr std::int64_t kFeatures = test_support::kClusterFeatures, kClasses = test_support::kClusterClasses;

eval::FamilySource three_class_family() {
  eval::FamilySource f;
  f.name = "price_direction";
  f.kind = tasks::TaskKind::classification;
  f.num_classes = kClasses;
  f.feature_dim = kFeatures;
  f.outputs = kClasses;
  f.train_batch = [](std::int64_t n, Generator& gen) {
    tasks::TaskBatch b;
    for (std::int64_t i = 0; i < n; ++i) b.push_back(cluster_task(6, 6, gen));
    return b;
  };
  return f;
}

// Meta-trains `kind` on `family` for two steps through eval::train_benchmark_learner (the path of
// `metatape train` and the benchmark) and returns the checkpoint it wrote.
std::string train_like_the_cli(const std::string& kind, const eval::FamilySource& family) {
  eval::BenchmarkConfig config;
  config.learners = {kind};
  config.meta_steps = 2;
  config.meta_batch = 2;
  config.hidden = {8};
  config.diagnose_every = 0;
  config.out_dir = (temp_dir() / ("trained_" + family.name)).string();
  eval::TrainingRecord record;
  bool interrupted = false;
  eval::train_benchmark_learner(config, family, 0, 0, 0, nullptr, 0, nullptr, record, interrupted);
  const std::string path = eval::learner_checkpoint_path(config, 0, family.name, kind);
  REQUIRE(fs::exists(path));
  return path;
}

}  // namespace

TEST_CASE("capi: a classifier checkpoint written by train is served as a classifier with its class count") {
  const eval::FamilySource family = three_class_family();
  for (const std::string kind : {"maml", "protonet"}) {
    CAPTURE(kind);
    const std::string path = train_like_the_cli(kind, family);
    mt_model* model = load_ok(path);
    mt_model_info info{};
    REQUIRE(mt_model_info_get(model, &info) == MT_OK);
    CHECK(info.task_kind == MT_TASK_CLASSIFICATION);
    CHECK(info.num_classes == 3);
    if (kind == "maml") CHECK(info.out_features == 3);
    // One class label per row; a label outside the recorded 3 classes is refused.
    std::vector<float> x, y;
    for (int r = 0; r < 6; ++r) {
      for (int f = 0; f < kFeatures; ++f) x.push_back(static_cast<float>(r % 3) + 0.1f * static_cast<float>(f));
      y.push_back(static_cast<float>(r % 3));
    }
    mt_adapted* adapted = nullptr;
    REQUIRE(mt_adapt(model, x.data(), 6, kFeatures, y.data(), 1, 1, &adapted) == MT_OK);
    std::vector<float> out(6 * 3);
    std::int64_t columns = 0;
    REQUIRE(mt_predict(adapted, x.data(), 6, kFeatures, out.data(), 18, &columns) == MT_OK);
    CHECK(columns == 3);
    mt_adapted_free(adapted);
    y[5] = 3.0f;
    expect_error(mt_adapt(model, x.data(), 6, kFeatures, y.data(), 1, 1, &adapted), MT_ERR_INVALID_ARGUMENT,
                 "y[5,0] = 3.000000 is not a class label in [0, 3)");
    // A caller-supplied kind or class count that contradicts the checkpoint is refused.
    expect_error(mt_model_set_task(model, MT_TASK_REGRESSION, 0), MT_ERR_INVALID_ARGUMENT,
                 kind == "maml"
                     ? "the checkpoint records task kind 'classification' (3 classes); 'regression' contradicts it"
                     : "only does classification");
    expect_error(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 4), MT_ERR_INVALID_ARGUMENT,
                 "the checkpoint records 3 classes; 4 contradicts it");
    REQUIRE(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 0) == MT_OK);
    REQUIRE(mt_model_info_get(model, &info) == MT_OK);
    CHECK(info.num_classes == 3);
    REQUIRE(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 3) == MT_OK);
    mt_model_free(model);

    const auto m = capi::InferenceModel::load(path);
    CHECK(m->task_recorded());
    CHECK(m->task_kind() == tasks::TaskKind::classification);
    CHECK(m->num_classes() == 3);
  }

  // A regression family records regression.
  eval::FamilySource reg = three_class_family();
  reg.name = "volatility";
  reg.kind = tasks::TaskKind::regression;
  reg.num_classes = 0;
  reg.outputs = 1;
  reg.train_batch = [](std::int64_t n, Generator& gen) {
    tasks::TaskBatch b;
    for (std::int64_t i = 0; i < n; ++i) {
      tasks::Task t = cluster_task(6, 6, gen);
      t.kind = tasks::TaskKind::regression;
      t.num_classes = 0;
      t.support_y = Tensor::normal(Shape{6, 1}, 0.0, 1.0, gen);
      t.query_y = Tensor::normal(Shape{6, 1}, 0.0, 1.0, gen);
      b.push_back(t);
    }
    return b;
  };
  mt_model* model = load_ok(train_like_the_cli("maml", reg));
  mt_model_info info{};
  REQUIRE(mt_model_info_get(model, &info) == MT_OK);
  CHECK(info.task_kind == MT_TASK_REGRESSION);
  expect_error(mt_model_set_task(model, MT_TASK_CLASSIFICATION, 0), MT_ERR_INVALID_ARGUMENT,
               "records task kind 'regression'");
  mt_model_free(model);
}

TEST_CASE("capi: a recorded class count that contradicts the model, or a bad task key, is refused at load") {
  Trained t = write_checkpoint("maml", {2, 8, 3}, "{}", 0);
  nn::Checkpoint cp;
  cp.sections["params"] = t.learner->meta_parameters();
  const std::string path = (temp_dir() / "recorded.ckpt").string();
  auto load_with = [&](const std::string& extra) {
    nlohmann::json config = nlohmann::json::parse(t.learner->config_json());
    config.update(nlohmann::json::parse(extra));
    cp.config_json = config.dump();
    nn::save_checkpoint(path, cp);
    mt_model* model = nullptr;
    const mt_status s = mt_model_load(path.c_str(), &model);
    mt_model_free(model);
    return s;
  };
  expect_error(load_with(R"({"task_kind": "classification", "num_classes": 5})"), MT_ERR_CHECKPOINT,
               "the config records 5 classes, the model outputs 3 logits");
  expect_error(load_with(R"({"task_kind": "classification", "num_classes": -2})"), MT_ERR_CHECKPOINT, "num_classes -2");
  expect_error(load_with(R"({"task_kind": "classification", "num_classes": 2.5})"), MT_ERR_CHECKPOINT,
               "num_classes 2.5");
  expect_error(load_with(R"({"task_kind": 3})"), MT_ERR_CHECKPOINT, "task_kind 3 is not a string");
  expect_error(load_with(R"({"task_kind": "clustering"})"), MT_ERR_CHECKPOINT, "task_kind 'clustering'");
  CHECK(load_with(R"({"task_kind": "classification", "num_classes": 3})") == MT_OK);
  // Learner options of the wrong type or out of range are refused (a float such as 1e300 converted
  // to int was undefined behaviour), and a default step count above the limit is refused at adapt.
  expect_error(load_with(R"({"inner_steps": 1e300})"), MT_ERR_CHECKPOINT,
               "option 'inner_steps' is 1e+300, expected an integer");
  expect_error(load_with(R"({"inner_steps": 99999999999})"), MT_ERR_CHECKPOINT, "expected an integer in range");
  expect_error(load_with(R"({"first_order": "yes"})"), MT_ERR_CHECKPOINT,
               "option 'first_order' is \"yes\", expected true or false");
  REQUIRE(load_with(R"({"inner_steps": 100000})") == MT_OK);
  mt_model* model = load_ok(path);
  const std::vector<float> x = {0.1f, 0.2f}, y = {0.0f, 1.0f, 0.5f};
  mt_adapted* adapted = nullptr;
  expect_error(mt_adapt(model, x.data(), 1, 2, y.data(), 3, -1, &adapted), MT_ERR_INVALID_ARGUMENT,
               "the checkpoint's default of 100000 inner steps exceeds the limit 1000");
  mt_model_free(model);
}

TEST_CASE("capi: rows x features products are checked without overflow before any element is read") {
  Trained t = write_checkpoint("maml", {2, 8, 1}, R"({"task_kind": "regression"})", 0);
  mt_model* model = load_ok(t.path);
  const std::vector<float> x = {0.1f, 0.2f, 0.3f, 0.4f}, y = {1.0f, 2.0f};
  mt_adapted* adapted = nullptr;
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  // rows = INT64_MAX read far past the 4-float buffer before.
  expect_error(mt_adapt(model, x.data(), max, 2, y.data(), 1, 1, &adapted), MT_ERR_SHAPE,
               "adapt: x is 9223372036854775807 rows x 2 columns, more than the limit of 268435456 elements per array");
  // rows x 2 wraps to a small positive product.
  expect_error(mt_adapt(model, x.data(), max / 2 + 2, 2, y.data(), 1, 1, &adapted), MT_ERR_SHAPE,
               "more than the limit");
  expect_error(mt_adapt(model, x.data(), MT_MAX_ARRAY_ELEMENTS / 2 + 1, 2, y.data(), 1, 1, &adapted), MT_ERR_SHAPE,
               "more than the limit of 268435456");
  CHECK(adapted == nullptr);
  REQUIRE(mt_adapt(model, x.data(), 2, 2, y.data(), 1, 1, &adapted) == MT_OK);
  std::vector<float> out(2);
  std::int64_t columns = 0;
  expect_error(mt_predict(adapted, x.data(), max, 2, out.data(), 2, &columns), MT_ERR_SHAPE,
               "predict: x is 9223372036854775807 rows x 2 columns");
  expect_error(mt_predict(adapted, x.data(), std::int64_t{1} << 62, 2, out.data(), max, &columns), MT_ERR_SHAPE,
               "more than the limit");
  CHECK(mt_predict(adapted, x.data(), 2, 2, out.data(), 2, &columns) == MT_OK);
  // The helper itself: negative counts and overflow.
  CHECK_THROWS_WITH_AS(capi::checked_elements(-1, 2, "x"), doctest::Contains("a negative size"), capi::InputError);
  CHECK_THROWS_WITH_AS(capi::checked_elements(max, max, "x"), doctest::Contains("more than the limit"),
                       capi::InputError);
  CHECK(capi::checked_elements(1 << 14, 1 << 14, "x") == (std::int64_t{1} << 28));
  mt_adapted_free(adapted);
  mt_model_free(model);
}

TEST_CASE("capi: finite inputs that make the output NaN or Inf give MT_ERR_NON_FINITE_OUTPUT, never OK") {
  // All-ones weights: x = (3e38, 3e38) makes the hidden pre-activation 6e38, past float32's 3.4e38.
  Trained t = write_checkpoint("maml", {2, 8, 1}, "{}", 0);
  nn::ParameterList ones;
  const nn::ParameterList& params = t.learner->meta_parameters();
  for (std::size_t i = 0; i < params.size(); ++i) ones.add(params.name(i), Tensor::ones(params[i].shape()));
  nn::Checkpoint cp;
  cp.config_json = t.learner->config_json();
  cp.sections["params"] = ones;
  const std::string path = (temp_dir() / "ones.ckpt").string();
  nn::save_checkpoint(path, cp);
  mt_model* model = load_ok(path);

  const std::vector<float> huge = {3e38f, 3e38f, -3e38f, 3e38f}, small = {0.1f, 0.2f, 0.3f, 0.4f};
  const std::vector<float> y = {1.0f, 2.0f};
  mt_adapted* adapted = nullptr;
  expect_error(mt_adapt(model, huge.data(), 2, 2, y.data(), 1, 1, &adapted), MT_ERR_NON_FINITE_OUTPUT,
               "adapt: the adapted parameters are not finite: 'layer0.weight'");
  CHECK(adapted == nullptr);
  CHECK(std::string(mt_last_error()).find("although every input was finite") != std::string::npos);
  REQUIRE(mt_adapt(model, small.data(), 2, 2, y.data(), 1, 1, &adapted) == MT_OK);
  std::vector<float> out(2, 0.0f);
  std::int64_t columns = 0;
  const mt_status s = mt_predict(adapted, huge.data(), 2, 2, out.data(), 2, &columns);
  expect_error(s, MT_ERR_NON_FINITE_OUTPUT, "predict: the output is not finite: output[0,0] is infinite");
  CHECK(std::string(mt_status_name(MT_ERR_NON_FINITE_OUTPUT)) == "MT_ERR_NON_FINITE_OUTPUT");
  // The C++ core throws NonFiniteOutputError (an InputError), which the server also sees.
  const auto m = capi::InferenceModel::load(path);
  std::int64_t cols = 0;
  const capi::Adapted a = m->adapt(small.data(), 2, 2, y.data(), 1, 1);
  CHECK_THROWS_AS(m->predict(a, huge.data(), 2, 2, cols), capi::NonFiniteOutputError);
  mt_adapted_free(adapted);
  mt_model_free(model);
}

TEST_CASE("capi: a directory, /dev/zero or a crafted checkpoint is refused by mt_model_load") {
  mt_model* model = nullptr;
  expect_error(mt_model_load(temp_dir().c_str(), &model), MT_ERR_CHECKPOINT, "is a directory");
  expect_error(mt_model_load("/dev/zero", &model), MT_ERR_CHECKPOINT, "checkpoint '/dev/zero': is not a regular file");
  CHECK(model == nullptr);
  // Every crafted file of the fuzz corpus is refused with a checkpoint error (none crashes).
  const fs::path corpus = fs::path(METATAPE_SOURCE_DIR) / "fuzz/corpus/checkpoint";
  int crafted = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (entry.path().filename().string().rfind("crafted_", 0) != 0) continue;
    CAPTURE(entry.path());
    ++crafted;
    expect_error(mt_model_load(entry.path().c_str(), &model), MT_ERR_CHECKPOINT, entry.path().filename().string());
    CHECK(model == nullptr);
  }
  CHECK(crafted >= 6);
}
