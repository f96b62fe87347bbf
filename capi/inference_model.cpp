#include "capi/inference_model.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "nn/checkpoint.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"

namespace metatape::capi {
namespace {

using nlohmann::json;

// The first object (depth-first) holding a string "model" that starts with "mlp ".
const json* find_options(const json& node) {
  if (node.is_object()) {
    auto it = node.find("model");
    if (it != node.end() && it->is_string() && it->get<std::string>().rfind("mlp ", 0) == 0) return &node;
    for (const auto& [key, value] : node.items()) {
      if (const json* found = find_options(value)) return found;
    }
  } else if (node.is_array()) {
    for (const auto& value : node) {
      if (const json* found = find_options(value)) return found;
    }
  }
  return nullptr;
}

// The first string value under `key`, depth-first.
const json* find_string(const json& node, const std::string& key) {
  if (node.is_object()) {
    auto it = node.find(key);
    if (it != node.end() && it->is_string()) return &*it;
    for (const auto& [k, value] : node.items()) {
      if (const json* found = find_string(value, key)) return found;
    }
  } else if (node.is_array()) {
    for (const auto& value : node) {
      if (const json* found = find_string(value, key)) return found;
    }
  }
  return nullptr;
}

// "mlp 1-40-40-1 relu f32" -> MlpSpec.
nn::MlpSpec parse_model(const std::string& text, const std::string& path) {
  std::istringstream in(text);
  std::string word, sizes, activation, dtype;
  in >> word >> sizes >> activation >> dtype;
  nn::MlpSpec spec;
  std::istringstream sizes_in(sizes);
  std::string size;
  while (std::getline(sizes_in, size, '-')) {
    try {
      std::size_t used = 0;
      const long long v = std::stoll(size, &used);
      if (used != size.size() || v <= 0) throw std::invalid_argument(size);
      spec.sizes.push_back(v);
    } catch (const std::exception&) {
      throw CheckpointError("metatape: load: " + path + ": model '" + text +
                            "' has a bad layer size '" + size + "'");
    }
  }
  if (word != "mlp" || spec.sizes.size() < 2 || activation.empty()) {
    throw CheckpointError("metatape: load: " + path + ": model '" + text +
                          "' is not 'mlp <in>-<hidden>...-<out> <activation> <dtype>'");
  }
  try {
    spec.activation = nn::parse_activation(activation);
  } catch (const Error& e) {
    throw CheckpointError(std::string("metatape: load: ") + path + ": " + e.what());
  }
  if (dtype == "f64") spec.dtype = DType::f64;
  else if (dtype == "f32" || dtype.empty()) spec.dtype = DType::f32;
  else throw CheckpointError("metatape: load: " + path + ": model dtype '" + dtype + "' is not f32 or f64");
  return spec;
}

template <class T>
T option(const json& options, const char* key, T fallback) {
  auto it = options.find(key);
  if (it == options.end() || it->is_null()) return fallback;
  return it->get<T>();
}

meta::LearnerOptions parse_options(const json& o) {
  meta::LearnerOptions l;
  l.maml.inner_steps = option(o, "inner_steps", l.maml.inner_steps);
  l.maml.inner_lr = option(o, "inner_lr", l.maml.inner_lr);
  l.maml.first_order = option(o, "first_order", l.maml.first_order);
  l.maml.multi_step_loss = option(o, "multi_step_loss", l.maml.multi_step_loss);
  l.maml.msl_anneal_steps = option(o, "msl_anneal_steps", l.maml.msl_anneal_steps);
  l.maml.learn_inner_lrs = option(o, "learn_inner_lrs", l.maml.learn_inner_lrs);
  l.maml.first_order_until = option(o, "first_order_until", l.maml.first_order_until);
  l.maml.recompute_inner = option(o, "recompute_inner", l.maml.recompute_inner);
  l.meta_sgd.recompute_inner = option(o, "recompute_inner", l.meta_sgd.recompute_inner);
  l.anil.recompute_inner = option(o, "recompute_inner", l.anil.recompute_inner);
  l.meta_sgd.inner_steps = option(o, "inner_steps", l.meta_sgd.inner_steps);
  l.meta_sgd.alpha_init = option(o, "alpha_init", l.meta_sgd.alpha_init);
  l.meta_sgd.alpha_l2 = option(o, "alpha_l2", l.meta_sgd.alpha_l2);
  l.meta_sgd.first_order = option(o, "first_order", l.meta_sgd.first_order);
  l.reptile.inner_steps = option(o, "inner_steps", l.reptile.inner_steps);
  l.reptile.inner_lr = option(o, "inner_lr", l.reptile.inner_lr);
  l.reptile.inner_adam = option(o, "inner_adam", l.reptile.inner_adam);
  l.reptile.epsilon = option(o, "epsilon", l.reptile.epsilon);
  l.reptile.decay_steps = option(o, "decay_steps", l.reptile.decay_steps);
  l.reptile.use_query_in_inner = option(o, "use_query_in_inner", l.reptile.use_query_in_inner);
  l.anil.inner_steps = option(o, "inner_steps", l.anil.inner_steps);
  l.anil.inner_lr = option(o, "inner_lr", l.anil.inner_lr);
  l.anil.first_order = option(o, "first_order", l.anil.first_order);
  if (option<std::string>(o, "distance", "sqeuclidean") == "cosine") {
    l.proto.distance = meta::ProtoOptions::Distance::cosine;
  }
  l.proto.cosine_scale = option(o, "cosine_scale", l.proto.cosine_scale);
  l.matching.cosine_scale = option(o, "cosine_scale", l.matching.cosine_scale);
  return l;
}

// The learner kind from the keys of its options object, for checkpoints whose config is only the
// learner's config_json() (what eval::train_learner stores): each learner writes a distinct set.
std::string infer_learner(const json& o) {
  if (o.contains("full_context_embeddings")) return "matching";
  if (o.contains("distance")) return "protonet";
  if (o.contains("epsilon")) return "reptile";
  if (o.contains("alpha_init")) return "meta-sgd";
  if (o.contains("msl_anneal_steps")) {
    if (o.value("first_order", false)) return "fomaml";
    if (o.value("multi_step_loss", false) || o.value("learn_inner_lrs", false) ||
        o.value("first_order_until", 0) > 0) {
      return "maml++";
    }
    return "maml";
  }
  if (o.contains("inner_lr") && o.contains("first_order")) return "anil";
  return "";
}

bool is_metric(const std::string& learner) { return learner == "protonet" || learner == "matching"; }

tasks::TaskKind parse_kind(const std::string& text, const std::string& path) {
  if (text == "regression") return tasks::TaskKind::regression;
  if (text == "classification") return tasks::TaskKind::classification;
  if (text == "portfolio") return tasks::TaskKind::portfolio;
  throw CheckpointError("metatape: load: " + path + ": task_kind '" + text +
                        "' is not regression, classification or portfolio");
}

}  // namespace

std::string element_name(const std::string& array, std::int64_t row, std::int64_t col) {
  return array + "[" + std::to_string(row) + "," + std::to_string(col) + "]";
}

void check_finite(const float* data, std::int64_t rows, std::int64_t cols, const std::string& name) {
  for (std::int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(data[i])) {
      throw InputError(InputError::Kind::non_finite,
                       "metatape: " + element_name(name, i / cols, i % cols) + " is " +
                           (std::isnan(data[i]) ? "NaN" : "infinite") + " (inputs must be finite)");
    }
  }
}

std::shared_ptr<InferenceModel> InferenceModel::load(const std::string& path) {
  nn::Checkpoint cp;
  try {
    cp = nn::load_checkpoint(path);
  } catch (const Error& e) {
    throw CheckpointError(e.what());
  }
  json config;
  try {
    config = json::parse(cp.config_json);
  } catch (const json::exception& e) {
    throw CheckpointError("metatape: load: " + path + ": the config is not valid JSON (" + e.what() + ")");
  }
  const json* options = find_options(config);
  if (!options) {
    throw CheckpointError("metatape: load: " + path +
                          ": the config holds no model description (expected an options object with "
                          "\"model\": \"mlp <in>-...-<out> <activation> <dtype>\"; write checkpoints "
                          "with meta::save_learner or `metatape train`)");
  }
  const json* learner_name = find_string(config, "learner");
  const std::string kind = learner_name ? learner_name->get<std::string>() : infer_learner(*options);
  if (kind.empty()) {
    throw CheckpointError("metatape: load: " + path +
                          ": the config names no learner (expected \"learner\": \"maml\" etc., as "
                          "meta::save_learner writes)");
  }
  auto model = std::shared_ptr<InferenceModel>(new InferenceModel());
  model->learner_name_ = kind;
  model->model_description_ = (*options)["model"].get<std::string>();
  model->step_ = cp.step;
  const nn::MlpSpec spec = parse_model(model->model_description_, path);
  // The description must not ask for more parameters than the file holds (checked before allocating).
  std::int64_t described = 0, stored = 0;
  for (std::size_t i = 0; i + 1 < spec.sizes.size(); ++i) {
    if (spec.sizes[i] > (1 << 24) || spec.sizes[i + 1] > (1 << 24)) {
      throw CheckpointError("metatape: load: " + path + ": model '" + model->model_description_ +
                            "' has a layer wider than 16777216");
    }
    described += (spec.sizes[i] + 1) * spec.sizes[i + 1];
  }
  if (auto it = cp.sections.find("params"); it != cp.sections.end()) stored = it->second.numel();
  if (described > stored) {
    throw CheckpointError("metatape: load: " + path + ": model '" + model->model_description_ + "' needs " +
                          std::to_string(described) + " parameters, the checkpoint holds " +
                          std::to_string(stored));
  }
  auto mlp = std::make_shared<const nn::Mlp>(spec);
  try {
    Generator gen(0);
    nn::ParameterList init = mlp->init(gen);
    model->learner_ = meta::make_learner(model->learner_name_, mlp, std::move(init),
                                         nn::make_sgd(nn::OptimizerOptions{}), parse_options(*options));
    nn::restore_section(cp, "params", model->learner_->meta_parameters());
  } catch (const json::exception& e) {
    throw CheckpointError("metatape: load: " + path + ": bad learner options (" + e.what() + ")");
  } catch (const Error& e) {
    throw CheckpointError(std::string("metatape: load: ") + path + ": " + e.what());
  }
  model->learner_->set_meta_steps(cp.step);
  model->in_features_ = mlp->in_features();
  model->out_features_ = mlp->out_features();
  model->dtype_ = spec.dtype;
  model->default_steps_ = model->learner_->default_adapt_steps();
  if (const json* kind = find_string(config, "task_kind")) {
    model->kind_ = parse_kind(kind->get<std::string>(), path);
  } else {
    model->kind_ = is_metric(model->learner_name_) ? tasks::TaskKind::classification
                                                   : tasks::TaskKind::regression;
  }
  if (is_metric(model->learner_name_) && model->kind_ != tasks::TaskKind::classification) {
    throw CheckpointError("metatape: load: " + path + ": learner '" + model->learner_name_ +
                          "' only does classification, the config says another task kind");
  }
  return model;
}

void InferenceModel::set_task(tasks::TaskKind kind, std::int64_t num_classes) {
  if (num_classes < 0) {
    throw InputError(InputError::Kind::invalid_argument,
                     "metatape: set_task: num_classes must be >= 0, got " + std::to_string(num_classes));
  }
  if (is_metric(learner_name_) && kind != tasks::TaskKind::classification) {
    throw InputError(InputError::Kind::invalid_argument,
                     "metatape: set_task: learner '" + learner_name_ + "' only does classification");
  }
  if (!is_metric(learner_name_) && kind == tasks::TaskKind::classification && num_classes > 0 &&
      num_classes != out_features_) {
    throw InputError(InputError::Kind::invalid_argument,
                     "metatape: set_task: the model outputs " + std::to_string(out_features_) +
                         " logits, cannot classify into " + std::to_string(num_classes) + " classes");
  }
  kind_ = kind;
  num_classes_ = num_classes;
}

Adapted InferenceModel::adapt(const float* x, std::int64_t rows, std::int64_t features,
                              const float* y, std::int64_t y_cols, int steps, int max_steps) const {
  using K = InputError::Kind;
  if (!x || !y) throw InputError(K::invalid_argument, "metatape: adapt: x and y must not be null");
  if (rows < 1) throw InputError(K::shape, "metatape: adapt: the support set needs at least 1 row, got " + std::to_string(rows));
  if (features != in_features_) {
    throw InputError(K::shape, "metatape: adapt: x has " + std::to_string(features) +
                                   " features, the model expects " + std::to_string(in_features_));
  }
  const bool classify = kind_ == tasks::TaskKind::classification;
  const std::int64_t want_cols = classify ? 1 : out_features_;
  if (y_cols != want_cols) {
    throw InputError(K::shape, "metatape: adapt: y has " + std::to_string(y_cols) +
                                   " columns, expected " + std::to_string(want_cols) +
                                   (classify ? " (one class label per row)" : " (the model's outputs)"));
  }
  if (steps > max_steps || steps > kMaxSteps) {
    throw InputError(K::invalid_argument, "metatape: adapt: steps " + std::to_string(steps) +
                                              " exceeds the limit " + std::to_string(std::min(max_steps, kMaxSteps)));
  }
  check_finite(x, rows, features, "x");
  check_finite(y, rows, y_cols, "y");
  tasks::Task task;
  task.kind = kind_;
  task.support_x = Tensor::from_vector(std::vector<float>(x, x + rows * features), Shape{rows, features}, dtype_);
  if (classify) {
    std::int64_t classes = num_classes_ > 0 ? num_classes_ : (is_metric(learner_name_) ? 0 : out_features_);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
    std::int64_t largest = 0;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float v = y[i];
      if (v < 0 || v != std::floor(v) || (classes > 0 && v >= static_cast<float>(classes)) || v > 1e6f) {
        throw InputError(K::invalid_argument,
                         "metatape: adapt: " + element_name("y", i, 0) + " = " + std::to_string(v) +
                             " is not a class label in [0, " +
                             (classes > 0 ? std::to_string(classes) : std::string("classes")) + ")");
      }
      labels[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(v);
      largest = std::max(largest, labels[static_cast<std::size_t>(i)]);
    }
    task.num_classes = classes > 0 ? classes : largest + 1;
    task.support_y = Tensor::indices(labels);
  } else {
    task.support_y = Tensor::from_vector(std::vector<float>(y, y + rows * y_cols), Shape{rows, y_cols}, dtype_);
  }
  task.query_x = task.support_x;
  task.query_y = task.support_y;
  Adapted out;
  out.params = learner_->adapt(task, steps);
  out.support_rows = rows;
  out.steps = steps < 0 ? default_steps_ : steps;
  for (const Tensor& t : out.params.tensors()) {
    out.bytes += t.numel() * static_cast<std::int64_t>(kernels::dtype_size(t.dtype()));
  }
  return out;
}

std::vector<float> InferenceModel::predict(const Adapted& adapted, const float* x, std::int64_t rows,
                                           std::int64_t features, std::int64_t& columns) const {
  using K = InputError::Kind;
  if (!x) throw InputError(K::invalid_argument, "metatape: predict: x must not be null");
  if (rows < 1) throw InputError(K::shape, "metatape: predict: x needs at least 1 row, got " + std::to_string(rows));
  if (features != in_features_) {
    throw InputError(K::shape, "metatape: predict: x has " + std::to_string(features) +
                                   " features, the model expects " + std::to_string(in_features_));
  }
  check_finite(x, rows, features, "x");
  NoGradGuard no_grad;
  const Tensor input = Tensor::from_vector(std::vector<float>(x, x + rows * features), Shape{rows, features}, dtype_);
  const Tensor output = learner_->predict(adapted.params, input);
  columns = output.rank() == 2 ? output.dim(1) : 1;
  return output.dtype() == DType::f32 ? output.to_vector<float>() : output.to(DType::f32).to_vector<float>();
}

}  // namespace metatape::capi
