// A meta-trained learner loaded from a checkpoint, ready for few-shot adaptation and prediction. This
// is the C++ core behind the C API (capi/metatape.h) and the HTTP server (serve/).
//
// Reconstruction from a checkpoint (nn/checkpoint.h): the config JSON must name the learner kind
// ("learner": "maml" | "fomaml" | "maml++" | "meta-sgd" | "reptile" | "anil" | "protonet" |
// "matching") and hold the learner's options object (meta::save_learner writes it under "options";
// any object in the config with a "model" string "mlp <in>-<hidden>...-<out> <activation> <dtype>"
// is accepted). The MLP is rebuilt from that description and the "params" section restored into the
// learner's meta-parameters, which checks every name, shape and dtype.
// Task kind: config key "task_kind" (anywhere in the config: "regression", "classification",
// "portfolio"); else classification for protonet/matching and regression for the others; it can be
// overridden with set_task().
//
// Thread safety: after loading (and set_task), adapt() and predict() are const and may be called
// concurrently from any number of threads: each call records on its own thread's tape and only reads
// the meta-parameters. set_task() must not race with them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "meta/learner.h"
#include "nn/parameters.h"
#include "tasks/task.h"

namespace metatape::capi {

// Which argument failed validation; the C API maps these to its status codes.
class InputError : public Error {
 public:
  enum class Kind { invalid_argument, shape, non_finite };
  InputError(Kind kind, const std::string& message) : Error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// Loading failures (missing file, corrupt file, a config that names no learner, ...).
class CheckpointError : public Error {
 public:
  using Error::Error;
};

// An adapted model: the learner's adapted parameters (no autograd history) and their size.
struct Adapted {
  nn::ParameterList params;
  std::int64_t bytes = 0;  // sum of the parameters' storage bytes
  std::int64_t support_rows = 0;
  int steps = 0;
};

class InferenceModel {
 public:
  // Throws CheckpointError naming the file and the problem.
  static std::shared_ptr<InferenceModel> load(const std::string& path);

  const std::string& learner_name() const { return learner_name_; }
  const std::string& model_description() const { return model_description_; }
  std::int64_t in_features() const { return in_features_; }
  // Columns of predict()'s output: out_features for regression/portfolio and gradient learners; for
  // metric learners the number of classes seen in the support set (known per adapted model).
  std::int64_t out_features() const { return out_features_; }
  tasks::TaskKind task_kind() const { return kind_; }
  // Classification: classes; 0 means "the model's output size" (gradient learners) or "one more than
  // the largest support label" (metric learners).
  std::int64_t num_classes() const { return num_classes_; }
  int default_steps() const { return default_steps_; }
  std::int64_t step() const { return step_; }

  void set_task(tasks::TaskKind kind, std::int64_t num_classes);

  // x: rows x in_features, row-major. y: regression/portfolio rows x out_features; classification
  // rows x 1 holding integral class labels in [0, classes). steps < 0: the learner's default; at most
  // max_steps. Throws InputError for bad shapes, non-finite values, bad labels or steps.
  Adapted adapt(const float* x, std::int64_t rows, std::int64_t features, const float* y,
                std::int64_t y_cols, int steps, int max_steps = 1000) const;
  // Returns rows x columns (row-major) in `out`; `columns` set to the column count.
  std::vector<float> predict(const Adapted& adapted, const float* x, std::int64_t rows,
                             std::int64_t features, std::int64_t& columns) const;

  static constexpr int kMaxSteps = 1000;

 private:
  InferenceModel() = default;
  std::unique_ptr<meta::Learner> learner_;
  std::string learner_name_, model_description_;
  std::int64_t in_features_ = 0, out_features_ = 0, num_classes_ = 0, step_ = 0;
  tasks::TaskKind kind_ = tasks::TaskKind::regression;
  int default_steps_ = 0;
  DType dtype_ = DType::f32;
};

// "x[3,1]" style element names for messages.
std::string element_name(const std::string& array, std::int64_t row, std::int64_t col);
// Throws InputError(non_finite) naming the first NaN/Inf element of a rows x cols array.
void check_finite(const float* data, std::int64_t rows, std::int64_t cols, const std::string& name);

}  // namespace metatape::capi
