// libFuzzer: checkpoint files. The input is written to a per-process file and loaded twice: by
// nn::load_checkpoint (format, header JSON, entries, checksum) and by capi::InferenceModel::load
// (config parsing, learner reconstruction, parameter restore). metatape::Error is the only
// acceptable failure; crashes, sanitizer reports and other exceptions are findings.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "capi/inference_model.h"
#include "nn/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/metatape_fuzz_checkpoint_" + std::to_string(::getpid()) + ".ckpt";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    metatape::nn::load_checkpoint(path);
  } catch (const metatape::Error&) {}
  try {
    auto model = metatape::capi::InferenceModel::load(path);
    // A loadable model must also adapt and predict on a well-formed input.
    const std::int64_t features = model->in_features();
    if (features <= 64 && model->out_features() <= 64 &&
        model->task_kind() != metatape::tasks::TaskKind::classification) {
      std::vector<float> x(static_cast<std::size_t>(2 * features), 0.5f);
      std::vector<float> y(static_cast<std::size_t>(2 * model->out_features()), 0.25f);
      auto adapted = model->adapt(x.data(), 2, features, y.data(), model->out_features(), 1);
      std::int64_t columns = 0;
      model->predict(adapted, x.data(), 2, features, columns);
    }
  } catch (const metatape::Error&) {}
  return 0;
}
