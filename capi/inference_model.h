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
// "portfolio") and, for classification, "num_classes" (a non-negative integer; 0 = the model's output
// size or the support labels), as `metatape train` / eval::train_benchmark_learner record them. With
// no recorded kind: classification for protonet/matching, regression for the others, and set_task()
// may choose any kind. A recorded kind is the default and set_task() refuses a kind or a class count
// that contradicts it.
//
// Limits: every rows x columns array is at most kMaxArrayElements (MT_MAX_ARRAY_ELEMENTS) elements,
// checked with overflow-safe arithmetic before any element is read. Outputs are checked too: an
// adapted parameter or a prediction that is NaN or infinite (finite inputs near the float32 limit
// overflow) throws NonFiniteOutputError naming it, never returns it.
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
  enum class Kind { invalid_argument, shape, non_finite, non_finite_output };
  InputError(Kind kind, const std::string& message) : Error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// A computed value (an adapted parameter or a prediction) that is NaN or infinite although every input
// was finite. what(): "metatape: predict: the output is not finite: output[0,2] is NaN (...)" or
// "metatape: adapt: the adapted parameters are not finite: 'layer0.weight'[3] is NaN (...)".
class NonFiniteOutputError : public InputError {
 public:
  explicit NonFiniteOutputError(const std::string& message) : InputError(Kind::non_finite_output, message) {}
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
  // True when the checkpoint's config records the task kind (and then set_task must agree with it).
  bool task_recorded() const { return task_recorded_; }
  int default_steps() const { return default_steps_; }
  std::int64_t step() const { return step_; }

  void set_task(tasks::TaskKind kind, std::int64_t num_classes);

  // x: rows x in_features, row-major. y: regression/portfolio rows x out_features; classification
  // rows x 1 holding integral class labels in [0, classes). steps < 0: the learner's default; at most
  // max_steps. Throws InputError for bad shapes, non-finite values, bad labels or steps.
  Adapted adapt(const float* x, std::int64_t rows, std::int64_t features, const float* y, std::int64_t y_cols,
                int steps, int max_steps = 1000) const;
  // Returns rows x columns (row-major) in `out`; `columns` set to the column count.
  std::vector<float> predict(const Adapted& adapted, const float* x, std::int64_t rows, std::int64_t features,
                             std::int64_t& columns) const;

  static constexpr int kMaxSteps = 1000;
  static constexpr std::int64_t kMaxArrayElements = std::int64_t{1} << 28;  // MT_MAX_ARRAY_ELEMENTS

 private:
  InferenceModel() = default;
  std::unique_ptr<meta::Learner> learner_;
  std::string learner_name_, model_description_;
  std::int64_t in_features_ = 0, out_features_ = 0, num_classes_ = 0, step_ = 0;
  tasks::TaskKind kind_ = tasks::TaskKind::regression;
  bool task_recorded_ = false;
  std::int64_t recorded_classes_ = 0;
  int default_steps_ = 0;
  DType dtype_ = DType::f32;
};

// "x[3,1]" style element names for messages.
std::string element_name(const std::string& array, std::int64_t row, std::int64_t col);
// Throws InputError(non_finite) naming the first NaN/Inf element of a rows x cols array.
void check_finite(const float* data, std::int64_t rows, std::int64_t cols, const std::string& name);
// rows * cols for a caller's array, refusing (InputError shape, naming `what` and the numbers) a
// negative count, a product that overflows int64, or one above kMaxArrayElements.
std::int64_t checked_elements(std::int64_t rows, std::int64_t cols, const std::string& what);

}  // namespace metatape::capi
