// CPU reference for softmax, log_softmax, the fused cross-entropy and one_hot.
#include <cmath>
#include <string>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {

// One row's max and rest = sum of exp(x_c - max) over every column but the first argmax, so that
// log(sum) = log1p(rest) keeps full relative precision when the row is confident (rest << 1); the
// plain sum 1 + rest would round rest to the spacing of 1.0 (f32: 1.2e-7, i.e. 0.3% of e^-10).
template <class T>
void row_max_rest(const T* in, std::int64_t cols, T& mx, T& rest) {
  std::int64_t arg = 0;
  for (std::int64_t c = 1; c < cols; ++c) {
    if (in[c] > in[arg]) arg = c;
  }
  mx = in[arg];
  rest = T(0);
  for (std::int64_t c = 0; c < cols; ++c) {
    if (c != arg) rest += std::exp(in[c] - mx);
  }
}

}  // namespace

void softmax(const View& x, const View& out, bool log) {
  with_float_type(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t cols = x.shape.last();
    const std::int64_t rows = cols == 0 ? 0 : x.numel() / cols;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* in = x.as<T>() + r * cols;
      T* y = out.as<T>() + r * cols;
      T mx, rest;
      row_max_rest(in, cols, mx, rest);
      if (log) {
        // (x - max) - log1p(rest), not x - (max + log(sum)): the latter loses the small log(sum) of
        // a confident row to rounding against a large max (f32 logits [100, 90]: 0.8% off).
        const T log_sum = std::log1p(rest);
        for (std::int64_t c = 0; c < cols; ++c) y[c] = (in[c] - mx) - log_sum;
      } else {
        const T sum = T(1) + rest;
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
        fail("cross_entropy: label " + std::to_string(lab[r]) + " in row " + std::to_string(r) + " is outside [0, " +
             std::to_string(cols) + ") (check the number of classes)");
      }
      T mx, rest;
      row_max_rest(in, cols, mx, rest);
      total += std::log1p(rest) - (in[lab[r]] - mx);  // -log_softmax, computed as in softmax() above
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
        fail("one_hot: label " + std::to_string(lab[r]) + " in row " + std::to_string(r) + " is outside [0, " +
             std::to_string(cols) + ")");
      }
      for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] = c == lab[r] ? T(1) : T(0);
    }
  });
}

}  // namespace metatape::kernels::cpu
