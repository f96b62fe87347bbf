#include "capi/inference_model.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/tape.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/checkpoint.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "nn/temporal_encoder.h"

namespace metatape::capi {
namespace {

using nlohmann::json;

// Whether `text` is a model description a learner writes: nn::Mlp's "mlp ..." or
// nn::TemporalEncoder's "temporal ..." (the latter is refused by parse_model, naming it).
bool is_model_description(const std::string& text) {
  return text.rfind("mlp ", 0) == 0 || nn::is_temporal_description(text);
}

// The first object (depth-first) holding a string "model" that is a model description.
const json* find_options(const json& node) {
  if (node.is_object()) {
    auto it = node.find("model");
    if (it != node.end() && it->is_string() && is_model_description(it->get<std::string>())) return &node;
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

// The first value under `key` (any type), depth-first.
const json* find_key(const json& node, const std::string& key) {
  if (node.is_object()) {
    auto it = node.find(key);
    if (it != node.end()) return &*it;
    for (const auto& [k, value] : node.items()) {
      if (const json* found = find_key(value, key)) return found;
    }
  } else if (node.is_array()) {
    for (const auto& value : node) {
      if (const json* found = find_key(value, key)) return found;
    }
  }
  return nullptr;
}

const char* kind_name(tasks::TaskKind kind) {
  switch (kind) {
    case tasks::TaskKind::classification:
      return "classification";
    case tasks::TaskKind::portfolio:
      return "portfolio";
    case tasks::TaskKind::regression:
      break;
  }
  return "regression";
}

// Throws NonFiniteOutputError naming the first NaN/Inf value of `t` (any dtype, any device).
void check_finite_output(const Tensor& t, const std::string& what) {
  const std::vector<double> v = t.to(Device::cpu).to(DType::f64).to_vector<double>();
  const std::int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) continue;
    const auto n = static_cast<std::int64_t>(i);
    const std::string element =
        t.rank() == 2 ? element_name(what, n / cols, n % cols) : what + "[" + std::to_string(n) + "]";
    throw NonFiniteOutputError(std::string("metatape: ") + element + " is " + (std::isnan(v[i]) ? "NaN" : "infinite") +
                               " although every input was finite (the computation overflowed float32: scale "
                               "the inputs, e.g. standardise them, or use fewer or smaller adaptation steps)");
  }
}

// "mlp 1-40-40-1 relu f32" -> MlpSpec.
nn::MlpSpec parse_model(const std::string& text, const std::string& path) {
  if (nn::is_temporal_description(text)) {
    throw CheckpointError("metatape: load: " + path + ": model '" + text +
                          "' is a temporal encoder; the C API and `metatape serve` load MLP checkpoints only "
                          "(train with model: mlp to deploy through them)");
  }
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
      throw CheckpointError("metatape: load: " + path + ": model '" + text + "' has a bad layer size '" + size + "'");
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
  if (dtype == "f64")
    spec.dtype = DType::f64;
  else if (dtype == "f32" || dtype.empty())
    spec.dtype = DType::f32;
  else
    throw CheckpointError("metatape: load: " + path + ": model dtype '" + dtype + "' is not f32 or f64");
  return spec;
}

// The option under `key`, or `fallback` when absent or null. A value of the wrong type, or an integer
// out of T's range (a float such as 1e300 would be undefined behaviour to convert), is refused.
template <class T>
T option(const json& options, const char* key, T fallback) {
  auto it = options.find(key);
  if (it == options.end() || it->is_null()) return fallback;
  const auto bad = [&](const char* want) {
    fail(std::string("option '") + key + "' is " + it->dump() + ", expected " + want);
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) bad("true or false");
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) bad("an integer");
    if (it->is_number_unsigned()
            ? it->template get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max())
            : it->template get<std::int64_t>() < static_cast<std::int64_t>(std::numeric_limits<T>::min())) {
      bad("an integer in range");
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number()) bad("a number");
  } else {
    if (!it->is_string()) bad("a string");
  }
  return it->template get<T>();
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
    // Type errors in these keys are reported by parse_options, naming the key.
    const auto set = [&](const char* key) { return o.contains(key) && o[key].is_boolean() && o[key].get<bool>(); };
    if (set("first_order")) return "fomaml";
    if (set("multi_step_loss") || set("learn_inner_lrs") ||
        (o.contains("first_order_until") && o["first_order_until"].is_number_integer() &&
         o["first_order_until"].get<std::int64_t>() > 0)) {
      return "maml++";
    }
    return "maml";
  }
  if (o.contains("inner_lr") && o.contains("first_order")) return "anil";
  return "";
}

bool is_metric(const std::string& learner) { return meta::is_metric_learner(learner); }

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

std::int64_t checked_elements(std::int64_t rows, std::int64_t cols, const std::string& what) {
  std::int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n) || n > InferenceModel::kMaxArrayElements) {
    throw InputError(
        InputError::Kind::shape,
        "metatape: " + what + " is " + std::to_string(rows) + " rows x " + std::to_string(cols) + " columns, " +
            (rows < 0 || cols < 0 ? std::string("a negative size")
                                  : "more than the limit of " + std::to_string(InferenceModel::kMaxArrayElements) +
                                        " elements per array (MT_MAX_ARRAY_ELEMENTS; split the call)"));
  }
  return n;
}

void check_finite(const float* data, std::int64_t rows, std::int64_t cols, const std::string& name) {
  const std::int64_t n = checked_elements(rows, cols, name);
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(data[i])) {
      throw InputError(InputError::Kind::non_finite, "metatape: " + element_name(name, i / cols, i % cols) + " is " +
                                                         (std::isnan(data[i]) ? "NaN" : "infinite") +
                                                         " (inputs must be finite)");
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
  std::string kind;
  try {
    kind = learner_name ? learner_name->get<std::string>() : infer_learner(*options);
  } catch (const json::exception& e) {
    throw CheckpointError("metatape: load: " + path + ": bad learner options (" + e.what() + ")");
  }
  if (kind.empty()) {
    throw CheckpointError("metatape: load: " + path +
                          ": the config names no learner (expected \"learner\": \"maml\" etc., as "
                          "meta::save_learner writes)");
  }
  if (meta::find_learner(kind) == nullptr) {
    throw CheckpointError("metatape: load: " + path + ": the config names learner '" + kind + "', not one of " +
                          meta::learner_names_text(", ", " or ") + " (was it written by another program?)");
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
    if (__builtin_add_overflow(described, (spec.sizes[i] + 1) * spec.sizes[i + 1], &described)) {
      throw CheckpointError("metatape: load: " + path + ": model '" + model->model_description_ +
                            "' describes more than 2^63 parameters");
    }
  }
  if (auto it = cp.sections.find("params"); it != cp.sections.end()) stored = it->second.numel();
  if (described > stored) {
    throw CheckpointError("metatape: load: " + path + ": model '" + model->model_description_ + "' needs " +
                          std::to_string(described) + " parameters, the checkpoint holds " + std::to_string(stored));
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
  if (const json* kind = find_key(config, "task_kind")) {
    if (!kind->is_string()) {
      throw CheckpointError("metatape: load: " + path + ": task_kind " + kind->dump() + " is not a string");
    }
    model->kind_ = parse_kind(kind->get<std::string>(), path);
    model->task_recorded_ = true;
  } else {
    model->kind_ = is_metric(model->learner_name_) ? tasks::TaskKind::classification : tasks::TaskKind::regression;
  }
  if (is_metric(model->learner_name_) && model->kind_ != tasks::TaskKind::classification) {
    throw CheckpointError("metatape: load: " + path + ": learner '" + model->learner_name_ +
                          "' only does classification, the config says another task kind");
  }
  if (const json* classes = find_key(config, "num_classes");
      classes && model->kind_ == tasks::TaskKind::classification) {
    if (!classes->is_number_unsigned() || classes->get<std::uint64_t>() > (1u << 24)) {
      throw CheckpointError("metatape: load: " + path + ": num_classes " + classes->dump() +
                            " is not an integer in [0, 16777216]");
    }
    const auto n = static_cast<std::int64_t>(classes->get<std::uint64_t>());
    if (n == 1) throw CheckpointError("metatape: load: " + path + ": num_classes 1 (a classifier needs >= 2)");
    if (n > 0 && !is_metric(model->learner_name_) && n != model->out_features_) {
      throw CheckpointError("metatape: load: " + path + ": the config records " + std::to_string(n) +
                            " classes, the model outputs " + std::to_string(model->out_features_) + " logits");
    }
    model->num_classes_ = n;
    model->recorded_classes_ = n;
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
  if (task_recorded_ && kind != kind_) {
    throw InputError(InputError::Kind::invalid_argument,
                     std::string("metatape: set_task: the checkpoint records task kind '") + kind_name(kind_) + "'" +
                         (recorded_classes_ > 0 ? " (" + std::to_string(recorded_classes_) + " classes)" : "") + "; '" +
                         kind_name(kind) + "' contradicts it (leave the kind unset to use the recorded one)");
  }
  if (task_recorded_ && recorded_classes_ > 0 && num_classes > 0 && num_classes != recorded_classes_) {
    throw InputError(InputError::Kind::invalid_argument,
                     "metatape: set_task: the checkpoint records " + std::to_string(recorded_classes_) + " classes; " +
                         std::to_string(num_classes) + " contradicts it (pass 0 to use the recorded count)");
  }
  if (task_recorded_ && recorded_classes_ > 0 && num_classes == 0) num_classes = recorded_classes_;
  if (!is_metric(learner_name_) && kind == tasks::TaskKind::classification && num_classes > 0 &&
      num_classes != out_features_) {
    throw InputError(InputError::Kind::invalid_argument,
                     "metatape: set_task: the model outputs " + std::to_string(out_features_) +
                         " logits, cannot classify into " + std::to_string(num_classes) + " classes");
  }
  kind_ = kind;
  num_classes_ = num_classes;
}

Adapted InferenceModel::adapt(const float* x, std::int64_t rows, std::int64_t features, const float* y,
                              std::int64_t y_cols, int steps, int max_steps) const {
  using K = InputError::Kind;
  if (!x || !y) throw InputError(K::invalid_argument, "metatape: adapt: x and y must not be null");
  if (rows < 1)
    throw InputError(K::shape, "metatape: adapt: the support set needs at least 1 row, got " + std::to_string(rows));
  if (features != in_features_) {
    throw InputError(K::shape, "metatape: adapt: x has " + std::to_string(features) + " features, the model expects " +
                                   std::to_string(in_features_));
  }
  const bool classify = kind_ == tasks::TaskKind::classification;
  const std::int64_t want_cols = classify ? 1 : out_features_;
  if (y_cols != want_cols) {
    throw InputError(K::shape, "metatape: adapt: y has " + std::to_string(y_cols) + " columns, expected " +
                                   std::to_string(want_cols) +
                                   (classify ? " (one class label per row)" : " (the model's outputs)"));
  }
  if (steps > max_steps || steps > kMaxSteps) {
    throw InputError(K::invalid_argument, "metatape: adapt: steps " + std::to_string(steps) + " exceeds the limit " +
                                              std::to_string(std::min(max_steps, kMaxSteps)));
  }
  if (steps < 0 && (default_steps_ > max_steps || default_steps_ > kMaxSteps)) {
    throw InputError(K::invalid_argument, "metatape: adapt: the checkpoint's default of " +
                                              std::to_string(default_steps_) + " inner steps exceeds the limit " +
                                              std::to_string(std::min(max_steps, kMaxSteps)) +
                                              " (pass steps explicitly)");
  }
  const std::int64_t x_elements = checked_elements(rows, features, "adapt: x");
  checked_elements(rows, y_cols, "adapt: y");
  check_finite(x, rows, features, "x");
  check_finite(y, rows, y_cols, "y");
  tasks::Task task;
  task.kind = kind_;
  task.support_x = Tensor::from_vector(std::vector<float>(x, x + x_elements), Shape{rows, features}, dtype_);
  if (classify) {
    std::int64_t classes = num_classes_ > 0 ? num_classes_ : (is_metric(learner_name_) ? 0 : out_features_);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(rows));
    std::int64_t largest = 0;
    for (std::int64_t i = 0; i < rows; ++i) {
      const float v = y[i];
      if (v < 0 || v != std::floor(v) || (classes > 0 && v >= static_cast<float>(classes)) || v > 1e6f) {
        throw InputError(K::invalid_argument, "metatape: adapt: " + element_name("y", i, 0) + " = " +
                                                  std::to_string(v) + " is not a class label in [0, " +
                                                  (classes > 0 ? std::to_string(classes) : std::string("classes")) +
                                                  ")");
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
  for (std::size_t i = 0; i < out.params.size(); ++i) {
    check_finite_output(out.params[i], "adapt: the adapted parameters are not finite: '" + out.params.name(i) + "'");
  }
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
  const std::int64_t x_elements = checked_elements(rows, features, "predict: x");
  check_finite(x, rows, features, "x");
  NoGradGuard no_grad;
  const Tensor input = Tensor::from_vector(std::vector<float>(x, x + x_elements), Shape{rows, features}, dtype_);
  const Tensor output = learner_->predict(adapted.params, input);
  columns = output.rank() == 2 ? output.dim(1) : 1;
  check_finite_output(output, "predict: the output is not finite: output");
  return output.dtype() == DType::f32 ? output.to_vector<float>() : output.to(DType::f32).to_vector<float>();
}

}  // namespace metatape::capi
