// PyTorch parity through a Conv-4 backbone: one meta-step's meta-gradient of MAML (second order, 2
// inner steps, both downsampling variants), FOMAML, ANIL and ProtoNets against
// scripts/make_conv4_fixture.py (torch.nn.functional + torch.autograd). f64, tolerance 1e-9 relative
// to the case's largest gradient entry (the check of tests/meta/pytorch_fixture.h). Where torch is
// importable the fixture is also regenerated and compared live.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "meta/learners.h"
#include "nn/conv4.h"
#include "tests/meta/pytorch_fixture.h"

using namespace metatape;
using namespace metatape::test;

namespace {

nn::ParameterList ordered_params(const json& fx, const std::string& model) {
  nn::ParameterList out;
  for (const auto& name : fx.at("parameter_order").at(model)) {
    out.add(name.get<std::string>(), decode(fx.at("models").at(model).at(name.get<std::string>()), DType::f64));
  }
  return out;
}

tasks::TaskBatch fixture_batch(const json& fx) {
  tasks::TaskBatch batch;
  for (const auto& t : fx.at("batch")) {
    tasks::Task task;
    task.support_x = decode(t.at("support_x"), DType::f64);
    task.query_x = decode(t.at("query_x"), DType::f64);
    task.support_y = Tensor::indices(t.at("support_y").get<std::vector<std::int64_t>>());
    task.query_y = Tensor::indices(t.at("query_y").get<std::vector<std::int64_t>>());
    task.kind = tasks::TaskKind::classification;
    task.num_classes = fx.at("net").at("ways").get<std::int64_t>();
    batch.push_back(task);
  }
  return batch;
}

void check_conv4_fixture(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open fixture " << path << " (run scripts/make_conv4_fixture.py)");
  const json fx = json::parse(in);
  const double tol = 1e-9;
  const auto batch = fixture_batch(fx);
  int cases = 0;
  for (const auto& [name, c] : fx.at("cases").items()) {
    CAPTURE(name);
    const json& o = c.at("options");
    const bool embedding = c.at("model") == "embedding";
    nn::Conv4Spec spec;
    spec.image_size = fx.at("net").at("image_size");
    spec.channels = fx.at("net").at("channels");
    spec.blocks = fx.at("net").at("blocks");
    spec.downsample = nn::parse_downsample(o.at("downsample"));
    spec.out_features = embedding ? 0 : fx.at("net").at("ways").get<std::int64_t>();
    spec.dtype = DType::f64;
    auto model = std::make_shared<const nn::Conv4>(spec);
    const nn::ParameterList init = ordered_params(fx, c.at("model"));
    auto recorder_owner = std::make_unique<Recorder>();
    Recorder* recorder = recorder_owner.get();
    std::unique_ptr<meta::Learner> learner;
    if (name == "maml" || name == "maml-stride" || name == "fomaml") {
      meta::MamlOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      m.first_order = name == "fomaml";
      learner = meta::make_maml(model, init, std::move(recorder_owner), m);
    } else if (name == "anil") {
      meta::AnilOptions m;
      m.inner_steps = o.at("inner_steps");
      m.inner_lr = o.at("inner_lr");
      learner = meta::make_anil(model, init, std::move(recorder_owner), m);
    } else if (name == "protonet") {
      learner = meta::make_protonet(model, init, std::move(recorder_owner), {});
    } else {
      FAIL("unknown fixture case " << name);
    }
    const auto metrics = learner->meta_train_step(batch, {true});
    CHECK(metrics.query_loss == doctest::Approx(c.at("loss").get<double>()).epsilon(tol));
    const nn::ParameterList& meta = learner->meta_parameters();
    const nn::ParameterList expected = decode_list(c.at("grads"), DType::f64);
    REQUIRE(expected.size() == meta.size());
    REQUIRE(recorder->grads.size() == meta.size());
    double case_scale = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      for (double v : expected[i].to_vector<double>()) case_scale = std::max(case_scale, std::abs(v));
    }
    double worst = 0.0;  // max |ours - torch| over the case, relative to the case's largest entry
    for (std::size_t i = 0; i < meta.size(); ++i) {
      check_close(name + " grad " + meta.name(i), recorder->grads[i], expected.get(meta.name(i)), tol,
                  0.01 * case_scale);
      const auto ours = recorder->grads[i].to_vector<double>();
      const auto theirs = expected.get(meta.name(i)).to_vector<double>();
      for (std::size_t k = 0; k < ours.size(); ++k) worst = std::max(worst, std::abs(ours[k] - theirs[k]) / case_scale);
    }
    MESSAGE(name << ": worst |ours - torch| / max |torch| = " << worst);
    ++cases;
  }
  CHECK(cases == 5);
}

}  // namespace

TEST_CASE("Conv-4 meta-gradients (MAML 2 inner steps, both variants; FOMAML; ANIL; ProtoNets) match PyTorch in f64") {
  check_conv4_fixture(source_dir() + "/tests/data/conv4_parity_f64.json");
}

TEST_CASE("live Conv-4 PyTorch parity: regenerate the fixture with torch and compare") {
  if (std::system("python3 -c 'import torch' > /dev/null 2>&1") != 0) {
    MESSAGE("skipped: torch is not importable here (pip install torch to run this check)");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("metatape_conv4_parity_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cmd =
      "python3 '" + source_dir() + "/scripts/make_conv4_fixture.py' --out '" + dir.string() + "' > /dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  check_conv4_fixture((dir / "conv4_parity_f64.json").string());
  std::filesystem::remove_all(dir);
}
