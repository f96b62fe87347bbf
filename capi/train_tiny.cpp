// metatape_train_tiny OUT [META_STEPS] [LEARNER] [HIDDEN]: meta-trains a small learner (mlp
// 1-HIDDEN-HIDDEN-1 relu f32, HIDDEN 40 by default) on the MAML sinusoid regression tasks and writes a checkpoint with meta::save_learner. Used
// by scripts/install-check.sh and the C API / server measurements; not an installed tool.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "meta/learners.h"
#include "nn/mlp.h"
#include "tasks/sinusoid.h"

int main(int argc, char** argv) {
  using namespace metatape;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.ckpt [META_STEPS=50] [LEARNER=maml] [HIDDEN=40]\n", argv[0]);
    return 2;
  }
  try {
    const std::string out = argv[1];
    const long steps = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 50;
    const std::string kind = argc > 3 ? argv[3] : "maml";
    const long hidden = argc > 4 ? std::strtol(argv[4], nullptr, 10) : 40;
    nn::MlpSpec spec;
    spec.sizes = {1, hidden, hidden, 1};
    auto mlp = std::make_shared<const nn::Mlp>(spec);
    Generator gen(7);
    nn::OptimizerOptions adam;
    adam.lr = 1e-3;
    meta::LearnerOptions options;
    options.maml.inner_steps = 1;
    options.maml.inner_lr = 0.01;
    auto learner = meta::make_learner(kind, mlp, mlp->init(gen), nn::make_adam(adam), options);
    for (long s = 0; s < steps; ++s) {
      const meta::StepMetrics m = learner->meta_train_step(tasks::sample_sinusoid_batch(gen, 4), {s + 1 == steps});
      if (s + 1 == steps) std::printf("step %ld query loss %.4f\n", s + 1, m.query_loss);
    }
    meta::save_learner(out, *learner, &gen, R"({"task_kind": "regression", "family": "sinusoid"})");
    std::printf("wrote %s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
