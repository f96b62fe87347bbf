// The methods a benchmark scores on each episode: meta-learners (meta::Learner) and the baselines.
//
// Every method maps (episode, list of adaptation step counts) to one vector of raw query outputs per
// step count, row-major (query rows, family.outputs), in the order of the list. Methods that do not
// take gradient steps (metric learners, zero-skill) return the same outputs for every count.
//
// Baselines (the family baselines, prior, majority, persistence, threshold_rule, support_mean, ewma,
// har_rv, equal_weight and min_variance, are in eval/baselines.h):
//   scratch     a freshly initialised network of the learners' architecture (drawn from the episode's
//               generator) trained on the support set with SGD, the same number of steps as the
//               learner it is compared with, learning rate `lr`, each step's gradient clipped to
//               global norm 1 (so a 2-row support set cannot make it diverge).
//   finetune    the same SGD fine-tuning, started from a network pre-trained on all meta-train tasks
//               jointly (support and query rows pooled; see pretrain_network).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "eval/episodes.h"
#include "meta/learner.h"
#include "nn/model.h"
#include "nn/optimizer.h"
#include "nn/parameters.h"

namespace metatape::eval {

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  virtual bool is_baseline() const = 0;
  virtual bool uses_steps() const = 0;
  virtual std::vector<std::vector<double>> predict(const Episode& episode, const std::vector<int>& steps,
                                                   Generator& gen) = 0;
};

// Wraps a trained learner (not owned). Metric learners ("protonet", "matching") do not use steps.
std::unique_ptr<Method> make_learner_method(meta::Learner& learner);
std::unique_ptr<Method> make_scratch_method(std::shared_ptr<const nn::Model> model, double lr);
std::unique_ptr<Method> make_finetune_method(std::shared_ptr<const nn::Model> model, nn::ParameterList pretrained,
                                             double lr);

// Time-series tasks often lack some classes in their support set (regimes persist for dozens of bars).
// Metric learners (ProtoNets, Matching Nets) need a support row per class they score, so for them the
// task is restricted to the classes present in its support set: support labels are renumbered
// 0..m-1 in increasing class order, `present` receives the original ids, and when drop_query is set
// the query rows of absent classes are removed (for meta-training: their loss is undefined). At
// evaluation the metric learner's m outputs are put back at the original class positions and every
// absent class gets logit -1e9: it is never predicted. Non-classification tasks are returned as is.
tasks::Task restrict_to_support_classes(const tasks::Task& task, bool drop_query,
                                        std::vector<std::int64_t>* present = nullptr);
// Wraps family.train_batch so every task is restricted as above (query rows dropped); tasks left with
// no query row are replaced by the next draw.
FamilySource with_support_classes_only(const FamilySource& family);

// Trains a network on meta-train tasks jointly: `steps` updates of `optimizer`, each on a batch of
// `batch` tasks from family.train_batch with support and query rows pooled. Returns the trained
// parameters (no history). The same budget as meta-training: steps x batch tasks.
nn::ParameterList pretrain_network(const nn::Model& model, nn::ParameterList init, nn::Optimizer& optimizer,
                                   const FamilySource& family, std::int64_t steps, std::int64_t batch, Generator& gen);

// SGD (gradient clipped to global norm 1) on the support set from `start`, returning the query outputs after each requested count
// of steps (sorted or not). Used by scratch and finetune; exposed for tests.
std::vector<std::vector<double>> sgd_query_outputs(const nn::Model& model, const nn::ParameterList& start,
                                                   const tasks::Task& task, double lr, const std::vector<int>& steps);

}  // namespace metatape::eval
