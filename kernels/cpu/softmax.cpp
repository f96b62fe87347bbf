// CPU reference for softmax, log_softmax, the fused cross-entropy and one_hot.
#include <cmath>
#include <string>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {

void softmax(const View& x, const View& out, bool log) {
  with_float_type(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t cols = x.shape.last();
    const std::int64_t rows = cols == 0 ? 0 : x.numel() / cols;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* in = x.as<T>() + r * cols;
      T* y = out.as<T>() + r * cols;
      T mx = in[0];
      for (std::int64_t c = 1; c < cols; ++c) mx = std::max(mx, in[c]);
      T sum = T(0);
      for (std::int64_t c = 0; c < cols; ++c) sum += std::exp(in[c] - mx);
      if (log) {
        const T lse = mx + std::log(sum);
        for (std::int64_t c = 0; c < cols; ++c) y[c] = in[c] - lse;
      } else {
        for (std::int64_t c = 0; c < cols; ++c) y[c] = std::exp(in[c] - mx) / sum;
      }
    }
  });
}

void cross_entropy(const View& logits, const View& labels, const View& out) {
  with_float_type(logits.dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t rows = logits.shape[0];
    const std::int64_t cols = logits.shape[1];
    const std::int64_t* lab = labels.as<std::int64_t>();
    T total = T(0);
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* in = logits.as<T>() + r * cols;
      if (lab[r] < 0 || lab[r] >= cols) {
        fail("cross_entropy: label " + std::to_string(lab[r]) + " in row " + std::to_string(r) +
             " is outside [0, " + std::to_string(cols) + ") (check the number of classes)");
      }
      T mx = in[0];
      for (std::int64_t c = 1; c < cols; ++c) mx = std::max(mx, in[c]);
      T sum = T(0);
      for (std::int64_t c = 0; c < cols; ++c) sum += std::exp(in[c] - mx);
      total += mx + std::log(sum) - in[lab[r]];
    }
    out.as<T>()[0] = rows == 0 ? T(0) : total / static_cast<T>(rows);
  });
}

void one_hot(const View& labels, const View& out) {
  with_float_type(out.dtype, "one_hot", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t rows = out.shape[0];
    const std::int64_t cols = out.shape[1];
    const std::int64_t* lab = labels.as<std::int64_t>();
    T* y = out.as<T>();
    for (std::int64_t r = 0; r < rows; ++r) {
      if (lab[r] < 0 || lab[r] >= cols) {
        fail("one_hot: label " + std::to_string(lab[r]) + " in row " + std::to_string(r) +
             " is outside [0, " + std::to_string(cols) + ")");
      }
      for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] = c == lab[r] ? T(1) : T(0);
    }
  });
}

}  // namespace metatape::kernels::cpu
