/* adapt_predict CHECKPOINT [regression|classification|portfolio]: loads a meta-trained checkpoint through the metatape C API, adapts it to
 * a 10-row support set and predicts 5 query rows. For a 1-input regression model (the sinusoid
 * learner) the support set is y = 2 sin(x - 0.5); for other models, a fixed deterministic set.
 * The optional second argument sets the task kind (mt_model_set_task); a checkpoint that records its
 * kind refuses a different one.
 * Prints the predictions and the time from main() to the first prediction. Exit code 0 on success,
 * 1 with the library's message on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <metatape/metatape.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int check(mt_status status, const char* what) {
  if (status == MT_OK) return 0;
  fprintf(stderr, "%s failed: %s: %s\n", what, mt_status_name(status), mt_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const double start = now_ms();
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s CHECKPOINT [regression|classification|portfolio]\n", argv[0]);
    return 2;
  }
  mt_model* model = NULL;
  if (check(mt_model_load(argv[1], &model), "mt_model_load")) return 1;
  if (argc == 3) {
    const mt_task_kind kind = strcmp(argv[2], "classification") == 0 ? MT_TASK_CLASSIFICATION
                              : strcmp(argv[2], "portfolio") == 0    ? MT_TASK_PORTFOLIO
                                                                     : MT_TASK_REGRESSION;
    if (check(mt_model_set_task(model, kind, 0), "mt_model_set_task")) return 1;
  }
  mt_model_info info;
  if (check(mt_model_info_get(model, &info), "mt_model_info_get")) return 1;

  enum { support = 10, query = 5 };
  const int64_t f = info.in_features;
  const int64_t ycols = info.task_kind == MT_TASK_CLASSIFICATION ? 1 : info.out_features;
  float* x = malloc(sizeof(float) * support * f);
  float* y = malloc(sizeof(float) * support * ycols);
  float* qx = malloc(sizeof(float) * query * f);
  for (int64_t i = 0; i < support * f; ++i) x[i] = (float)(-5.0 + 10.0 * (double)((i * 7) % 11) / 10.0);
  for (int64_t i = 0; i < query * f; ++i) qx[i] = (float)(-4.0 + 8.0 * (double)((i * 3) % 7) / 6.0);
  for (int64_t r = 0; r < support; ++r) {
    for (int64_t c = 0; c < ycols; ++c) {
      if (info.task_kind == MT_TASK_CLASSIFICATION) y[r] = (float)(r % 2);
      else y[r * ycols + c] = (float)(2.0 * sin(x[r * f] - 0.5));
    }
  }
  mt_adapted* adapted = NULL;
  if (check(mt_adapt(model, x, support, f, y, ycols, -1, &adapted), "mt_adapt")) return 1;
  float out[query * 64];
  int64_t columns = 0;
  if (check(mt_predict(adapted, qx, query, f, out, query * 64, &columns), "mt_predict")) return 1;
  const double first = now_ms() - start;

  printf("metatape %s, learner %s, %lld -> %lld\n", mt_version(), info.learner,
         (long long)info.in_features, (long long)columns);
  for (int r = 0; r < query; ++r) {
    printf("x=%6.2f  prediction", qx[r * f]);
    for (int64_t c = 0; c < columns; ++c) printf(" %9.4f", out[r * columns + c]);
    if (info.task_kind != MT_TASK_CLASSIFICATION && f == 1) printf("   target %9.4f", 2.0 * sin(qx[r] - 0.5));
    printf("\n");
  }
  printf("first adapted prediction after %.3f ms (from main)\n", first);
  mt_adapted_free(adapted);
  mt_model_free(model);
  free(x);
  free(y);
  free(qx);
  return 0;
}
