// PyTorch parity: one meta-step of every learner against results computed by
// scripts/make_pytorch_fixtures.py (torch.autograd, written from the papers' definitions). Tolerance
// per tensor: max |ours - torch| <= tol * max(max |torch tensor|, 0.01 * max |torch, whole case|),
// tol = 1e-9 in f64 and 1e-4 in f32 (the floor covers gradients that are exactly zero in exact
// arithmetic, e.g. ProtoNet's last bias under squared Euclidean distance, where both sides are noise). Where torch is
// importable, the fixtures are also regenerated into a temporary folder and compared live.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tests/meta/pytorch_fixture.h"

using namespace metatape;
using nlohmann::json;
using namespace metatape::test;

namespace {

// JSON objects keep keys sorted; restore the model's order.
nn::ParameterList model_params(const json& model, DType dtype) {
  const auto sizes = model.at("sizes").get<std::vector<std::int64_t>>();
  nn::ParameterList out;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    for (const auto& n : {nn::Mlp::weight_name(l), nn::Mlp::bias_name(l)}) {
      out.add(n, decode(model.at("params").at(n), dtype));
    }
  }
  return out;
}

tasks::TaskBatch decode_batch(const json& j, DType dtype, bool classification) {
  tasks::TaskBatch batch;
  for (const auto& t : j) {
    tasks::Task task;
    const DType label = classification ? DType::i64 : dtype;
    task.support_x = decode(t.at("support_x"), dtype);
    task.support_y = decode(t.at("support_y"), label);
    task.query_x = decode(t.at("query_x"), dtype);
    task.query_y = decode(t.at("query_y"), label);
    task.kind = classification ? tasks::TaskKind::classification : tasks::TaskKind::regression;
    task.num_classes = classification ? 3 : 0;
    batch.push_back(task);
  }
  return batch;
}

void check_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open fixture " << path << " (run scripts/make_pytorch_fixtures.py)");
  const json fx = json::parse(in);
  const DType dtype = fx.at("dtype") == "f64" ? DType::f64 : DType::f32;
  const double tol = dtype == DType::f64 ? 1e-9 : 1e-4;
  for (const auto& [name, c] : fx.at("cases").items()) {
    CAPTURE(name);
    CAPTURE(path);
    const json& model_json = fx.at("models").at(c.at("model").get<std::string>());
    auto mlp = std::make_shared<nn::Mlp>(nn::MlpSpec{model_json.at("sizes").get<std::vector<std::int64_t>>(),
                                                     nn::Activation::relu, nn::Init::uniform_fan_in, dtype});
    const bool classification = c.at("batch") == "cls";
    const auto batch = decode_batch(fx.at("batches").at(c.at("batch").get<std::string>()), dtype, classification);
    const json& o = c.at("options");
    auto recorder_owner = std::make_unique<Recorder>();
    Recorder* recorder = recorder_owner.get();
    std::unique_ptr<meta::Learner> learner;
    if (name == "maml" || name == "fomaml" || name == "maml-ce") {
      meta::MamlOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      m.first_order = name == "fomaml";
      learner = meta::make_maml(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
    } else if (name == "anil") {
      meta::AnilOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      learner = meta::make_anil(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
    } else if (name == "meta-sgd") {
      meta::MetaSgdOptions m;
      m.inner_steps = o.at("inner_steps");
      m.alpha_l2 = o.at("alpha_l2");
      learner = meta::make_meta_sgd(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
      const nn::ParameterList alphas = decode_list(c.at("alphas"), dtype);
      for (std::size_t i = 0; i < alphas.size(); ++i) {
        learner->meta_parameters()[learner->meta_parameters().index(alphas.name(i))].assign(alphas[i]);
      }
    } else if (name == "reptile") {
      meta::ReptileOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      m.epsilon = o.at("epsilon");
      learner = meta::make_reptile(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
    } else if (name == "protonet" || name == "protonet-cosine") {
      meta::ProtoOptions m;
      if (o.at("distance") == "cosine") {
        m.distance = meta::ProtoOptions::Distance::cosine;
        m.cosine_scale = o.at("cosine_scale");
      }
      learner = meta::make_protonet(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
    } else if (name == "matching") {
      meta::MatchingOptions m;
      m.cosine_scale = o.at("cosine_scale");
      learner = meta::make_matching(mlp, model_params(model_json, dtype), std::move(recorder_owner), m);
    } else {
      FAIL("unknown fixture case " << name);
    }
    const auto metrics = learner->meta_train_step(batch, {true});
    if (name != "meta-sgd") {
      CHECK(metrics.query_loss == doctest::Approx(c.at("loss").get<double>()).epsilon(tol));
    }
    const nn::ParameterList& meta = learner->meta_parameters();
    const nn::ParameterList expected = decode_list(c.at("grads"), dtype);
    REQUIRE(expected.size() == meta.size());
    REQUIRE(recorder->grads.size() == meta.size());
    double case_scale = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      for (double v : expected[i].to_vector<double>()) case_scale = std::max(case_scale, std::abs(v));
    }
    for (std::size_t i = 0; i < meta.size(); ++i) {
      check_close(name + " grad " + meta.name(i), recorder->grads[i], expected.get(meta.name(i)), tol,
                  0.01 * case_scale);
    }
    if (name == "reptile") {
      // The paper's update with an SGD outer optimizer: theta + epsilon (mean phi - theta).
      auto sgd_learner = meta::make_reptile(
          mlp, model_params(model_json, dtype), nn::make_sgd({}),
          meta::ReptileOptions{o.at("inner_steps"), o.at("inner_lr"), false, o.at("epsilon"), 0, false});
      sgd_learner->meta_train_step(batch, {false});
      const nn::ParameterList after = decode_list(c.at("after"), dtype);
      for (std::size_t i = 0; i < after.size(); ++i) {
        check_close("reptile after " + after.name(i), sgd_learner->meta_parameters().get(after.name(i)), after[i], tol);
      }
    }
    if (c.contains("after_adam")) {
      nn::OptimizerOptions adam;
      adam.lr = c.at("adam_lr");
      meta::MamlOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      auto adam_learner = meta::make_maml(mlp, model_params(model_json, dtype), nn::make_adam(adam), m);
      adam_learner->meta_train_step(batch, {false});
      const nn::ParameterList after = decode_list(c.at("after_adam"), dtype);
      const nn::ParameterList before = model_params(model_json, dtype);
      for (std::size_t i = 0; i < after.size(); ++i) {
        // Compare the Adam step itself (after - before), which is ~lr in size.
        const Tensor ours = sub(adam_learner->meta_parameters().get(after.name(i)), before.get(after.name(i)));
        const Tensor theirs = sub(after[i], before.get(after.name(i)));
        check_close("maml adam step " + after.name(i), ours, theirs, tol);
      }
    }
  }
}


}  // namespace

TEST_CASE("one meta-step of every learner matches the committed PyTorch fixtures") {
  for (const char* suffix : {"f64", "f32"}) {
    check_file(source_dir() + "/tests/data/meta_parity_" + suffix + ".json");
  }
}

TEST_CASE("live PyTorch parity: regenerate the fixtures with torch and compare") {
  if (std::system("python3 -c 'import torch' > /dev/null 2>&1") != 0) {
    MESSAGE(
        "skipped: torch is not importable here (pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu to run this check)");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("metatape_parity_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cmd =
      "python3 '" + source_dir() + "/scripts/make_pytorch_fixtures.py' --out '" + dir.string() + "' > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  for (const char* suffix : {"f64", "f32"})
    check_file((dir / ("meta_parity_" + std::string(suffix) + ".json")).string());
  std::filesystem::remove_all(dir);
}
