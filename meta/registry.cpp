#include "meta/registry.h"

#include "autograd/registry.h"
#include "kernels/error.h"

namespace metatape::meta {
namespace {

// A learner made by `Factory` from the LearnerOptions member `Options`.
template <auto Factory, auto Options>
std::unique_ptr<Learner> make_plain(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                    std::unique_ptr<nn::Optimizer> outer, const LearnerOptions& o) {
  return Factory(std::move(model), std::move(init), std::move(outer), o.*Options);
}

std::unique_ptr<Learner> make_fomaml_kind(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                          std::unique_ptr<nn::Optimizer> outer, const LearnerOptions& o) {
  MamlOptions m = o.maml;
  m.first_order = true;
  return make_maml(std::move(model), std::move(init), std::move(outer), m);
}

// maml++: the MAML++ multi-step loss and learnable inner learning rates switched on.
std::unique_ptr<Learner> make_maml_pp_kind(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                           std::unique_ptr<nn::Optimizer> outer, const LearnerOptions& o) {
  MamlOptions m = o.maml;
  m.multi_step_loss = true;
  m.learn_inner_lrs = true;
  return make_maml(std::move(model), std::move(init), std::move(outer), m);
}

std::vector<LearnerInfo> build_registry() {
  using B = BatchedAlgorithm;
  return {
      {.name = "maml",
       .help = "MAML, second order (Finn et al. 2017)",
       .options = "maml",
       .first_order = true,
       .recompute_inner = true,
       .batched = B::maml,
       .make = make_plain<make_maml, &LearnerOptions::maml>},
      {.name = "fomaml",
       .help = "first-order MAML",
       .options = "maml",
       .first_order = true,
       .recompute_inner = true,
       .batched = B::fomaml,
       .make = make_fomaml_kind},
      {.name = "maml++",
       .help = "MAML with the MAML++ multi-step loss and learnable inner rates (Antoniou et al. 2019)",
       .options = "maml",
       .first_order = true,
       .recompute_inner = true,
       .make = make_maml_pp_kind},
      {.name = "meta-sgd",
       .help = "Meta-SGD: learned per-parameter inner rates (Li et al. 2017)",
       .options = "meta_sgd",
       .first_order = true,
       .recompute_inner = true,
       .batched = B::meta_sgd,
       .make = make_plain<make_meta_sgd, &LearnerOptions::meta_sgd>},
      {.name = "reptile",
       .help = "Reptile (Nichol et al. 2018)",
       .options = "reptile",
       .batched = B::reptile,
       .make = make_plain<make_reptile, &LearnerOptions::reptile>},
      {.name = "anil",
       .help = "ANIL: only the head adapts in the inner loop (Raghu et al. 2020)",
       .options = "anil",
       .first_order = true,
       .recompute_inner = true,
       .batched = B::anil,
       .make = make_plain<make_anil, &LearnerOptions::anil>},
      {.name = "protonet",
       .help = "Prototypical Networks (Snell et al. 2017), classification only",
       .options = "proto",
       .metric = true,
       .needs_every_class = true,
       .make = make_plain<make_protonet, &LearnerOptions::proto>},
      {.name = "matching",
       .help = "Matching Networks (Vinyals et al. 2016), classification only",
       .options = "matching",
       .metric = true,
       .needs_every_class = true,
       .make = make_plain<make_matching, &LearnerOptions::matching>},
  };
}

}  // namespace

const std::vector<LearnerInfo>& learner_registry() {
  static const std::vector<LearnerInfo> registry = build_registry();
  return registry;
}

const LearnerInfo* find_learner(const std::string& name) { return find_named(learner_registry(), name); }

const LearnerInfo& learner_info(const std::string& name) {
  if (const LearnerInfo* l = find_learner(name)) return *l;
  fail("learner: unknown kind '" + name + "' (choose " + learner_names_text(", ", " or ") + ")");
}

const LearnerInfo& learner_info(BatchedAlgorithm algorithm) {
  for (const LearnerInfo& l : learner_registry()) {
    if (l.batched == algorithm) return l;
  }
  fail("batched: no learner has algorithm " + std::to_string(static_cast<int>(algorithm)));
}

std::vector<std::string> learner_names(LearnerFilter keep) { return entry_names(learner_registry(), keep); }

std::string learner_names_text(const std::string& separator, const std::string& last, LearnerFilter keep) {
  return join_names(learner_names(keep), separator, last);
}

bool is_metric_learner(const std::string& name) {
  const LearnerInfo* l = find_learner(name);
  return l && l->metric;
}

bool needs_every_class(const std::string& name) {
  const LearnerInfo* l = find_learner(name);
  return l && l->needs_every_class;
}

}  // namespace metatape::meta
