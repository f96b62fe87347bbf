// Prototypical Networks and Matching Networks: metric learners with no inner loop. The outer loss of a
// task is the query loss under the support set's prototypes (or attention); its gradient reaches the
// embedding parameters only.
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "meta/task_rows.h"
#include "nn/losses.h"

namespace metatape::meta {
namespace {

// Checks labels are in [0, classes) and (CPU labels only, so no device read) that every class has a
// support row, naming the empty class.
void check_support(const char* who, const tasks::Task& task) {
  if (task.kind != tasks::TaskKind::classification || task.num_classes < 1) {
    fail(std::string(who) + ": needs classification tasks with num_classes >= 1 (got family '" + task.family + "')");
  }
  if (task.support_y.dtype() != DType::i64 || task.support_y.rank() != 1) {
    fail(std::string(who) + ": support labels must be rank-1 i64, got " + describe(task.support_y));
  }
  if (task.support_y.device() != Device::cpu) return;
  std::vector<int> count(static_cast<std::size_t>(task.num_classes), 0);
  for (const auto y : task.support_y.to_vector<std::int64_t>()) {
    if (y < 0 || y >= task.num_classes) {
      fail(std::string(who) + ": support label " + std::to_string(y) + " is outside [0, " +
           std::to_string(task.num_classes) + ")");
    }
    ++count[static_cast<std::size_t>(y)];
  }
  for (std::size_t c = 0; c < count.size(); ++c) {
    if (count[c] == 0) {
      fail(std::string(who) + ": class " + std::to_string(c) + " has no support rows; every class needs at least one");
    }
  }
}

class MetricLearner : public Learner {
 public:
  MetricLearner(std::shared_ptr<const nn::Model> model, nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer)
      : model_(std::move(model)), optimizer_(std::move(outer)) {
    if (!model_) fail("metric learner: no embedding model given");
    if (!optimizer_) fail("metric learner: no outer optimizer given");
    meta_ = init;
    meta_.requires_grad_();
    layout_ = init.detached();
  }
  int default_adapt_steps() const override { return 0; }
  nn::ParameterList& meta_parameters() override { return meta_; }
  nn::Optimizer& optimizer() override { return *optimizer_; }

  MetaGradient meta_gradient(const tasks::TaskBatch& batch, const StepOptions& options) override {
    if (batch.empty()) fail(name() + ": meta_gradient got an empty task batch");
    // This process's share of the tasks, one row each; summed over the whole batch in task order
    // (meta/task_rows.h).
    TaskRows rows(batch, meta_.tensors(), 1);
    for (std::int64_t k = rows.share().begin; k < rows.share().end; ++k) {
      const tasks::Task& task = batch[static_cast<std::size_t>(k)];
      check_support(name().c_str(), task);
      TapeScope scope;
      const Tensor support = support_state(meta_, task);
      const Tensor output = head(support, task, model_->forward(meta_, task.query_x));
      const Tensor l = loss(task, output, task.query_y);
      const std::vector<Tensor> g = grad({l}, meta_.tensors());
      NoGradGuard no_grad;
      rows.add(g, {options.metrics ? l.detach() : Tensor()},
               options.metrics ? accuracy(output.detach(), task.query_y) : 0.0);
    }
    const TaskRows::Sums sums = rows.sum();
    const Tensor& loss_sum = sums.scalars[0];
    const double accuracy_sum = sums.host;
    const double inv = 1.0 / static_cast<double>(batch.size());
    std::vector<Tensor> total(meta_.size());
    {
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < total.size(); ++i) total[i] = affine(sums.tensors[i], inv, 0.0);
    }
    // No inner loop: the support loss reported is the query loss (no separate pre-adaptation loss).
    MetaGradient out;
    out.metrics = step_metrics(options, batch, loss_sum, loss_sum, accuracy_sum, total);
    out.grads = std::move(total);
    return out;
  }

  nn::ParameterList adapt(const tasks::Task& task, int) override {
    check_support(name().c_str(), task);
    NoGradGuard no_grad;
    nn::ParameterList out = meta_.clone();
    add_support(out, support_state(meta_, task), task);
    return out;
  }

  Tensor predict(const nn::ParameterList& adapted, const Tensor& x) override {
    if (adapted.size() <= layout_.size()) fail(name() + ": predict needs a model returned by adapt()");
    std::vector<Tensor> embedding(adapted.tensors().begin(), adapted.tensors().begin() + layout_.size());
    const Tensor q = model_->forward(layout_.with_tensors(embedding), x);
    return head_from_adapted(adapted, q);
  }

 protected:
  // The per-task state computed from the support set (prototypes, or support embeddings).
  virtual Tensor support_state(const nn::ParameterList& params, const tasks::Task& task) const = 0;
  // Output for query embeddings q given the support state.
  virtual Tensor head(const Tensor& support, const tasks::Task& task, const Tensor& q) const = 0;
  virtual void add_support(nn::ParameterList& out, const Tensor& support, const tasks::Task& task) const = 0;
  virtual Tensor head_from_adapted(const nn::ParameterList& adapted, const Tensor& q) const = 0;

  std::shared_ptr<const nn::Model> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  nn::ParameterList meta_;
  nn::ParameterList layout_;
};

class ProtoNet final : public MetricLearner {
 public:
  ProtoNet(std::shared_ptr<const nn::Model> model, nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
           ProtoOptions options)
      : MetricLearner(std::move(model), std::move(init), std::move(outer)), options_(options) {}
  std::string name() const override { return "protonet"; }
  std::string config_json() const override {
    return nlohmann::json{
        {"distance", options_.distance == ProtoOptions::Distance::sqeuclidean ? "sqeuclidean" : "cosine"},
        {"cosine_scale", options_.cosine_scale},
        {"model", model_->describe()}}
        .dump();
  }

 private:
  // prototypes (classes, embedding) = one_hot^T E / counts.
  Tensor support_state(const nn::ParameterList& params, const tasks::Task& task) const override {
    const Tensor e = model_->forward(params, task.support_x);
    const Tensor onehot = one_hot(task.support_y, task.num_classes, e.dtype());
    const Tensor counts = reshape(sum(onehot, 0), Shape{task.num_classes, 1});
    return div(gemm(onehot, true, e, false), counts);
  }
  Tensor logits(const Tensor& prototypes, const Tensor& q) const {
    if (options_.distance == ProtoOptions::Distance::sqeuclidean) return neg(pairwise_sqdist(q, prototypes));
    return affine(cosine_similarity(q, prototypes), options_.cosine_scale, 0.0);
  }
  Tensor head(const Tensor& support, const tasks::Task&, const Tensor& q) const override { return logits(support, q); }
  void add_support(nn::ParameterList& out, const Tensor& support, const tasks::Task&) const override {
    out.add("prototypes", support.detach());
  }
  Tensor head_from_adapted(const nn::ParameterList& adapted, const Tensor& q) const override {
    return logits(adapted.get("prototypes"), q);
  }
  ProtoOptions options_;
};

class MatchingNet final : public MetricLearner {
 public:
  MatchingNet(std::shared_ptr<const nn::Model> model, nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
              MatchingOptions options)
      : MetricLearner(std::move(model), std::move(init), std::move(outer)), options_(options) {}
  std::string name() const override { return "matching"; }
  std::string config_json() const override {
    return nlohmann::json{
        {"cosine_scale", options_.cosine_scale}, {"full_context_embeddings", false}, {"model", model_->describe()}}
        .dump();
  }
  Tensor loss(const tasks::Task&, const Tensor& output, const Tensor& y) const override {
    return nn::nll_loss(output, y);
  }

 private:
  Tensor support_state(const nn::ParameterList& params, const tasks::Task& task) const override {
    return model_->forward(params, task.support_x);
  }
  // log p, p = softmax(scale * cos(q, S)) one_hot(y_S); p is clamped below at 1e-12 before the log.
  Tensor log_probs(const Tensor& support, const Tensor& onehot, const Tensor& q) const {
    const Tensor attention = softmax(affine(cosine_similarity(q, support), options_.cosine_scale, 0.0));
    return log(clamp(matmul(attention, onehot), 1e-12, 2.0));
  }
  Tensor head(const Tensor& support, const tasks::Task& task, const Tensor& q) const override {
    return log_probs(support, one_hot(task.support_y, task.num_classes, support.dtype()), q);
  }
  void add_support(nn::ParameterList& out, const Tensor& support, const tasks::Task& task) const override {
    out.add("support.embedding", support.detach());
    out.add("support.one_hot", one_hot(task.support_y, task.num_classes, support.dtype()));
  }
  Tensor head_from_adapted(const nn::ParameterList& adapted, const Tensor& q) const override {
    return log_probs(adapted.get("support.embedding"), adapted.get("support.one_hot"), q);
  }
  MatchingOptions options_;
};

}  // namespace

std::unique_ptr<Learner> make_protonet(std::shared_ptr<const nn::Model> embedding, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, ProtoOptions options) {
  return std::make_unique<ProtoNet>(std::move(embedding), std::move(init), std::move(outer), options);
}

std::unique_ptr<Learner> make_matching(std::shared_ptr<const nn::Model> embedding, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, MatchingOptions options) {
  return std::make_unique<MatchingNet>(std::move(embedding), std::move(init), std::move(outer), options);
}

}  // namespace metatape::meta
