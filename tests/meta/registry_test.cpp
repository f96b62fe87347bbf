// The learner registry (meta/registry.h) and the one alpha_l2 penalty (meta/learners.h): every name
// builds a learner of that name, the capabilities agree with what the learners do, the batched path's
// algorithms are the registry's, and the error messages list the registry's names.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/batched.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/optimizer.h"

using namespace metatape;

TEST_CASE("learner registry: the names, in order, and lookups") {
  const std::vector<std::string> expected = {"maml",    "fomaml", "maml++",   "meta-sgd",
                                             "reptile", "anil",   "protonet", "matching"};
  CHECK(meta::learner_names() == expected);
  CHECK(meta::learner_names_text() == "maml, fomaml, maml++, meta-sgd, reptile, anil, protonet, matching");
  CHECK(meta::learner_names_text(" ", " ") == "maml fomaml maml++ meta-sgd reptile anil protonet matching");
  CHECK(meta::learner_names_text(", ", " or ", meta::batched_learner) == "maml, fomaml, meta-sgd, reptile or anil");
  CHECK(meta::learner_names_text(", ", ", ", meta::gradient_learner) ==
        "maml, fomaml, maml++, meta-sgd, reptile, anil");
  CHECK(meta::find_learner("alchemy") == nullptr);
  REQUIRE(meta::find_learner("meta-sgd") != nullptr);
  CHECK(&meta::learner_info("meta-sgd") == meta::find_learner("meta-sgd"));
  CHECK(meta::learner_info("meta-sgd").options == "meta_sgd");
  CHECK_THROWS_WITH_AS(
      meta::learner_info("alchemy"),
      "metatape: learner: unknown kind 'alchemy' (choose maml, fomaml, maml++, meta-sgd, reptile, anil, "
      "protonet or matching)",
      Error);
  for (const meta::LearnerInfo& l : meta::learner_registry()) {
    CAPTURE(l.name);
    CHECK(!l.help.empty());
    CHECK(static_cast<bool>(l.make));
    CHECK(meta::is_metric_learner(l.name) == l.metric);
    CHECK(meta::needs_every_class(l.name) == l.needs_every_class);
  }
  CHECK(meta::is_metric_learner("protonet"));
  CHECK(meta::is_metric_learner("matching"));
  CHECK_FALSE(meta::is_metric_learner("maml"));
  CHECK_FALSE(meta::is_metric_learner("alchemy"));
  CHECK(meta::needs_every_class("protonet"));
  CHECK_FALSE(meta::needs_every_class("anil"));
}

TEST_CASE("learner registry: every entry builds a learner of its name, with its options") {
  for (const meta::LearnerInfo& l : meta::learner_registry()) {
    CAPTURE(l.name);
    Generator gen(3);
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{2, 8, 3}});
    meta::LearnerOptions options;
    options.maml.inner_steps = 2;
    options.meta_sgd.inner_steps = 3;
    options.anil.inner_steps = 4;
    options.reptile.inner_steps = 5;
    auto learner = meta::make_learner(l.name, model, model->init(gen), nn::make_adam({}), options);
    CHECK(learner->name() == l.name);
    if (!l.metric) {
      // The options member the registry names is the one the learner reads.
      const int want = l.options == "maml" ? 2 : l.options == "meta_sgd" ? 3 : l.options == "anil" ? 4 : 5;
      CHECK(learner->default_adapt_steps() == want);
    }
    // recompute_inner: the learners that have the option accept it; the config names it.
    if (l.recompute_inner) CHECK(learner->config_json().find("recompute_inner") != std::string::npos);
  }
}

TEST_CASE("learner registry: the batched path supports exactly the entries with a batched algorithm") {
  for (const meta::LearnerInfo& l : meta::learner_registry()) {
    CAPTURE(l.name);
    Generator gen(5);
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{2, 8, 1}});
    if (l.batched) {
      CHECK(meta::parse_batched_algorithm(l.name) == *l.batched);
      CHECK(&meta::learner_info(*l.batched) == &l);
      auto learner = meta::make_batched_learner(l.name, model, model->init(gen), nn::make_adam({}), {});
      CHECK(learner->name() == l.name);
    } else {
      CHECK_THROWS_WITH_AS(
          meta::parse_batched_algorithm(l.name),
          ("metatape: batched: unknown algorithm '" + l.name + "' (choose maml, fomaml, meta-sgd, reptile or anil)")
              .c_str(),
          Error);
    }
  }
}

TEST_CASE("alpha_l2_penalty: alpha_l2 * sum(alpha^2), undefined when off, gradient 2 * alpha_l2 * alpha") {
  const Tensor a = Tensor::from_vector(std::vector<double>{1.0, -2.0}, Shape{2}, DType::f64).requires_grad_();
  const Tensor b = Tensor::from_vector(std::vector<double>{3.0}, Shape{1}, DType::f64).requires_grad_();
  CHECK_FALSE(meta::alpha_l2_penalty({a, b}, 0.0).defined());
  CHECK_FALSE(meta::alpha_l2_penalty({}, 0.5).defined());
  TapeScope scope;
  const Tensor p = meta::alpha_l2_penalty({a, b}, 0.5);
  REQUIRE(p.defined());
  CHECK(p.item() == doctest::Approx(0.5 * (1.0 + 4.0 + 9.0)));
  const std::vector<Tensor> g = grad({p}, {a, b});
  CHECK(g[0].to_vector<double>() == std::vector<double>{1.0, -2.0});
  CHECK(g[1].to_vector<double>() == std::vector<double>{3.0});
}
