// The C API (capi/metatape.h) over capi::InferenceModel. Every entry point catches everything: an
// exception becomes a status code and the thread-local last-error message.
#include "capi/metatape.h"

#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "capi/inference_model.h"

struct mt_model {
  std::shared_ptr<metatape::capi::InferenceModel> model;
};

struct mt_adapted {
  std::shared_ptr<const metatape::capi::InferenceModel> model;
  metatape::capi::Adapted adapted;
};

static_assert(metatape::capi::InferenceModel::kMaxArrayElements == MT_MAX_ARRAY_ELEMENTS,
              "capi/metatape.h and capi/inference_model.h disagree on the array limit");

namespace {

thread_local std::string last_error;

mt_status set_error(mt_status status, const std::string& message) {
  last_error = message;
  return status;
}

template <class F>
mt_status guarded(const char* where, F&& body) {
  using metatape::capi::InputError;
  try {
    return body();
  } catch (const InputError& e) {
    switch (e.kind()) {
      case InputError::Kind::shape:
        return set_error(MT_ERR_SHAPE, e.what());
      case InputError::Kind::non_finite:
        return set_error(MT_ERR_NON_FINITE, e.what());
      case InputError::Kind::non_finite_output:
        return set_error(MT_ERR_NON_FINITE_OUTPUT, e.what());
      case InputError::Kind::invalid_argument:
        break;
    }
    return set_error(MT_ERR_INVALID_ARGUMENT, e.what());
  } catch (const metatape::capi::CheckpointError& e) {
    return set_error(MT_ERR_CHECKPOINT, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(MT_ERR_OUT_OF_MEMORY, std::string("metatape: ") + where + ": out of memory");
  } catch (const std::exception& e) {
    return set_error(MT_ERR_INTERNAL, std::string("metatape: ") + where + ": " + e.what());
  } catch (...) {
    return set_error(MT_ERR_INTERNAL, std::string("metatape: ") + where + ": unknown exception");
  }
}

mt_status null_argument(const char* where, const char* name) {
  return set_error(MT_ERR_INVALID_ARGUMENT, std::string("metatape: ") + where + ": " + name + " must not be null");
}

}  // namespace

extern "C" {

const char* mt_version(void) { return "0.1.0"; }

const char* mt_last_error(void) { return last_error.c_str(); }

const char* mt_status_name(int32_t status) {
  switch (status) {
    case MT_OK:
      return "MT_OK";
    case MT_ERR_INVALID_ARGUMENT:
      return "MT_ERR_INVALID_ARGUMENT";
    case MT_ERR_SHAPE:
      return "MT_ERR_SHAPE";
    case MT_ERR_NON_FINITE:
      return "MT_ERR_NON_FINITE";
    case MT_ERR_CHECKPOINT:
      return "MT_ERR_CHECKPOINT";
    case MT_ERR_BUFFER_TOO_SMALL:
      return "MT_ERR_BUFFER_TOO_SMALL";
    case MT_ERR_OUT_OF_MEMORY:
      return "MT_ERR_OUT_OF_MEMORY";
    case MT_ERR_INTERNAL:
      return "MT_ERR_INTERNAL";
    case MT_ERR_NON_FINITE_OUTPUT:
      return "MT_ERR_NON_FINITE_OUTPUT";
  }
  return "unknown status";
}

mt_status mt_model_load(const char* checkpoint_path, mt_model** out_model) {
  if (!out_model) return null_argument("mt_model_load", "out_model");
  *out_model = nullptr;
  if (!checkpoint_path) return null_argument("mt_model_load", "checkpoint_path");
  return guarded("mt_model_load", [&] {
    auto handle = std::make_unique<mt_model>();
    handle->model = metatape::capi::InferenceModel::load(checkpoint_path);
    *out_model = handle.release();
    return MT_OK;
  });
}

mt_status mt_model_info_get(const mt_model* model, mt_model_info* out_info) {
  if (!model) return null_argument("mt_model_info_get", "model");
  if (!out_info) return null_argument("mt_model_info_get", "out_info");
  return guarded("mt_model_info_get", [&] {
    const auto& m = *model->model;
    mt_model_info info{};
    info.in_features = m.in_features();
    info.out_features = m.out_features();
    info.num_classes = m.num_classes();
    switch (m.task_kind()) {
      case metatape::tasks::TaskKind::regression:
        info.task_kind = MT_TASK_REGRESSION;
        break;
      case metatape::tasks::TaskKind::classification:
        info.task_kind = MT_TASK_CLASSIFICATION;
        break;
      case metatape::tasks::TaskKind::portfolio:
        info.task_kind = MT_TASK_PORTFOLIO;
        break;
    }
    info.default_steps = m.default_steps();
    info.meta_steps = m.step();
    std::strncpy(info.learner, m.learner_name().c_str(), sizeof(info.learner) - 1);
    *out_info = info;
    return MT_OK;
  });
}

mt_status mt_model_set_task(mt_model* model, int32_t kind, int64_t num_classes) {
  if (!model) return null_argument("mt_model_set_task", "model");
  return guarded("mt_model_set_task", [&] {
    metatape::tasks::TaskKind k;
    switch (kind) {
      case MT_TASK_REGRESSION:
        k = metatape::tasks::TaskKind::regression;
        break;
      case MT_TASK_CLASSIFICATION:
        k = metatape::tasks::TaskKind::classification;
        break;
      case MT_TASK_PORTFOLIO:
        k = metatape::tasks::TaskKind::portfolio;
        break;
      default:
        return set_error(MT_ERR_INVALID_ARGUMENT,
                         "metatape: mt_model_set_task: unknown task kind " + std::to_string(kind) +
                             " (use MT_TASK_REGRESSION, MT_TASK_CLASSIFICATION or MT_TASK_PORTFOLIO)");
    }
    model->model->set_task(k, num_classes);
    return MT_OK;
  });
}

void mt_model_free(mt_model* model) { delete model; }

mt_status mt_adapt(const mt_model* model, const float* x, int64_t rows, int64_t features, const float* y,
                   int64_t y_cols, int32_t steps, mt_adapted** out_adapted) {
  if (!out_adapted) return null_argument("mt_adapt", "out_adapted");
  *out_adapted = nullptr;
  if (!model) return null_argument("mt_adapt", "model");
  if (!x) return null_argument("mt_adapt", "x");
  if (!y) return null_argument("mt_adapt", "y");
  return guarded("mt_adapt", [&] {
    auto handle = std::make_unique<mt_adapted>();
    handle->model = model->model;
    handle->adapted = model->model->adapt(x, rows, features, y, y_cols, steps);
    *out_adapted = handle.release();
    return MT_OK;
  });
}

mt_status mt_predict(const mt_adapted* adapted, const float* x, int64_t rows, int64_t features, float* out,
                     int64_t out_capacity, int64_t* out_columns) {
  if (!adapted) return null_argument("mt_predict", "adapted");
  if (!x) return null_argument("mt_predict", "x");
  if (!out) return null_argument("mt_predict", "out");
  if (!out_columns) return null_argument("mt_predict", "out_columns");
  return guarded("mt_predict", [&] {
    std::int64_t columns = 0;
    const std::vector<float> values = adapted->model->predict(adapted->adapted, x, rows, features, columns);
    *out_columns = columns;
    if (out_capacity < static_cast<int64_t>(values.size())) {
      return set_error(MT_ERR_BUFFER_TOO_SMALL, "metatape: mt_predict: the output needs " +
                                                    std::to_string(values.size()) + " floats (" + std::to_string(rows) +
                                                    " rows x " + std::to_string(columns) +
                                                    " columns), out_capacity is " + std::to_string(out_capacity));
    }
    std::memcpy(out, values.data(), values.size() * sizeof(float));
    return MT_OK;
  });
}

int64_t mt_adapted_bytes(const mt_adapted* adapted) { return adapted ? adapted->adapted.bytes : 0; }

void mt_adapted_free(mt_adapted* adapted) { delete adapted; }

}  // extern "C"
