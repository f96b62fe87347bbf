/* metatape C API: load a meta-trained checkpoint, adapt it to a support set, predict.
 *
 * ABI: plain C, opaque handles, no exception crosses this boundary. Every function that can fail
 * returns an mt_status; on failure the calling thread's last-error message (mt_last_error) says what
 * went wrong and what to do. The message is thread-local and stays valid until the thread's next
 * failing call. Successful calls leave it unchanged.
 *
 * Arrays are row-major float32. Shapes:
 *   x  rows x features        features must equal the model's in_features
 *   y  rows x y_cols          regression/portfolio: y_cols = out_features;
 *                             classification: y_cols = 1, integral class labels >= 0
 * NaN or Inf anywhere in x or y is refused with MT_ERR_NON_FINITE naming the element ("x[3,1]").
 * An array may hold at most MT_MAX_ARRAY_ELEMENTS elements (rows x columns, checked without
 * overflow before any element is read): larger or negative counts give MT_ERR_SHAPE.
 * Outputs are checked too: when finite inputs still make an adapted parameter or a prediction NaN or
 * infinite (values near the float32 limit overflow), the call returns MT_ERR_NON_FINITE_OUTPUT and
 * the message names the value ("output[0,2] is NaN ..."); no NaN is ever returned with MT_OK.
 *
 * Task kind: a checkpoint written by `metatape train` records its task kind and class count; the
 * model uses them, and mt_model_set_task refuses a kind or a class count that contradicts them.
 *
 * Thread safety: an mt_model is immutable once loaded (and after mt_model_set_task). Any number of
 * threads may call mt_adapt and mt_predict concurrently on one mt_model and on one mt_adapted
 * handle. mt_model_set_task must not run concurrently with other calls on the same model.
 * mt_model_free / mt_adapted_free must be called once, when no other thread uses that handle. An
 * adapted handle keeps its model alive: freeing the model first is allowed.
 */
#ifndef METATAPE_METATAPE_H
#define METATAPE_METATAPE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MT_API __declspec(dllexport)
#else
#define MT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MT_VERSION_MAJOR 0
#define MT_VERSION_MINOR 1
#define MT_VERSION_PATCH 0

typedef enum mt_status {
  MT_OK = 0,
  MT_ERR_INVALID_ARGUMENT = 1, /* a null pointer, a bad label, too many steps, ... */
  MT_ERR_SHAPE = 2,            /* a row or feature count that does not fit the model */
  MT_ERR_NON_FINITE = 3,       /* NaN or Inf in an input array */
  MT_ERR_CHECKPOINT = 4,       /* the checkpoint is missing, corrupt or not a loadable learner */
  MT_ERR_BUFFER_TOO_SMALL = 5, /* the output buffer is smaller than rows x columns */
  MT_ERR_OUT_OF_MEMORY = 6,
  MT_ERR_INTERNAL = 7,         /* anything else; the message says what */
  MT_ERR_NON_FINITE_OUTPUT = 8 /* finite inputs gave a NaN or Inf output (overflow) */
} mt_status;

/* Most elements (rows x columns) of one input array: 2^28. */
#define MT_MAX_ARRAY_ELEMENTS ((int64_t)1 << 28)

typedef enum mt_task_kind { MT_TASK_REGRESSION = 0, MT_TASK_CLASSIFICATION = 1, MT_TASK_PORTFOLIO = 2 } mt_task_kind;

typedef struct mt_model mt_model;     /* a loaded checkpoint */
typedef struct mt_adapted mt_adapted; /* a model adapted to one support set */

typedef struct mt_model_info {
  int64_t in_features;
  int64_t out_features; /* prediction columns (metric learners: classes of the support set) */
  int64_t num_classes;  /* classification: 0 = decided by the model or the support labels */
  int32_t task_kind;    /* an mt_task_kind */
  int32_t default_steps;
  int64_t meta_steps; /* meta-training steps recorded in the checkpoint */
  char learner[32];   /* "maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", ... */
} mt_model_info;

/* "0.1.0"; never fails. */
MT_API const char* mt_version(void);
/* The calling thread's last error message ("" when none). Never null. */
MT_API const char* mt_last_error(void);
/* "MT_OK", "MT_ERR_SHAPE", ...; "unknown status" for other values. Enum arguments are passed as
   int32_t so that any value a caller sends is well defined. */
MT_API const char* mt_status_name(int32_t status);

MT_API mt_status mt_model_load(const char* checkpoint_path, mt_model** out_model);
MT_API mt_status mt_model_info_get(const mt_model* model, mt_model_info* out_info);
/* Sets the task kind: kind is an mt_task_kind (num_classes 0: the recorded count, else automatic).
   A checkpoint that records its kind accepts only that kind (and only its recorded class count):
   anything else is MT_ERR_INVALID_ARGUMENT with a message saying what the checkpoint records. */
MT_API mt_status mt_model_set_task(mt_model* model, int32_t kind, int64_t num_classes);
MT_API void mt_model_free(mt_model* model);

/* steps < 0: the learner's default number of inner steps. */
MT_API mt_status mt_adapt(const mt_model* model, const float* x, int64_t rows, int64_t features, const float* y,
                          int64_t y_cols, int32_t steps, mt_adapted** out_adapted);
/* Writes rows x columns floats to out (capacity in floats) and the column count to out_columns. */
MT_API mt_status mt_predict(const mt_adapted* adapted, const float* x, int64_t rows, int64_t features, float* out,
                            int64_t out_capacity, int64_t* out_columns);
/* Bytes held by the adapted parameters. */
MT_API int64_t mt_adapted_bytes(const mt_adapted* adapted);
MT_API void mt_adapted_free(mt_adapted* adapted);

#ifdef __cplusplus
}
#endif

#endif /* METATAPE_METATAPE_H */
