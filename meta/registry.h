// The registry of learners: the one list of their names, what each reads from LearnerOptions and what
// it can do. meta::make_learner, the batched path (meta/batched.h), the config reader, the CLI's
// --learners help, eval's metric-learner checks, the C API and the HTTP server all ask it, so a new
// learner is added here once.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "meta/batched.h"
#include "meta/learners.h"

namespace metatape::meta {

struct LearnerInfo {
  std::string name;  // "maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", "protonet", "matching"
  std::string help;  // one line, for --help
  // The LearnerOptions member it reads: "maml", "meta_sgd", "reptile", "anil", "proto", "matching".
  std::string options;
  // A metric learner (ProtoNets, Matching Nets): the model is an embedding (no output layer),
  // classification tasks only, no inner steps (adapt ignores steps).
  bool metric = false;
  // Adaptation needs at least one support row of every class (one prototype or attention target per
  // class); a support set missing a class is the caller's error.
  bool needs_every_class = false;
  bool first_order = false;      // has a first_order option (fomaml: always first order)
  bool recompute_inner = false;  // has the recompute_inner option (MamlOptions::recompute_inner)
  // The algorithm of make_batched_learner, when the batched path supports the learner.
  std::optional<BatchedAlgorithm> batched = std::nullopt;
  std::unique_ptr<Learner> (*make)(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, const LearnerOptions& options) = nullptr;
};

// Every learner, in a fixed order: maml, fomaml, maml++, meta-sgd, reptile, anil, protonet, matching.
const std::vector<LearnerInfo>& learner_registry();
// The entry named `name`, or nullptr when there is none.
const LearnerInfo* find_learner(const std::string& name);
// The entry named `name`; throws "learner: unknown kind '<name>' (choose maml, ..., protonet or
// matching)" otherwise.
const LearnerInfo& learner_info(const std::string& name);
// The entry whose batched algorithm is `algorithm`.
const LearnerInfo& learner_info(BatchedAlgorithm algorithm);

// The registry's names in its order; with `keep`, only the entries it accepts (e.g. batched_learner).
using LearnerFilter = bool (*)(const LearnerInfo&);
std::vector<std::string> learner_names(LearnerFilter keep = nullptr);
// The names joined: "maml, fomaml, ..., matching" (separator ", "), with `last` before the final one
// (e.g. " or " gives "..., protonet or matching").
std::string learner_names_text(const std::string& separator = ", ", const std::string& last = ", ",
                               LearnerFilter keep = nullptr);
// Filters: the entries the batched path supports; the gradient-based (non-metric) entries.
inline bool batched_learner(const LearnerInfo& l) { return l.batched.has_value(); }
inline bool gradient_learner(const LearnerInfo& l) { return !l.metric; }

// The metric-learner and every-class properties of a learner name; false for names not registered.
bool is_metric_learner(const std::string& name);
bool needs_every_class(const std::string& name);

}  // namespace metatape::meta
