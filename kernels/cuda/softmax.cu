// softmax / log_softmax over the last axis, the fused cross-entropy and one_hot on CUDA.
// softmax: one warp per row (8 rows per 256-thread block), lanes stride over the columns; max and sum
// use fixed shuffle trees. cross_entropy: a single launch of one block; warp w handles rows w, w + W,
// ... accumulating its rows in order, then the W warp sums are added in a fixed tree, so the loss is
// bit-identical run to run. A label outside [0, classes) is reported through the device error record
// (kernels/cuda/runtime.h) and makes the loss NaN.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

constexpr int rows_per_block = block_threads / 32;

// Returns (max, rest) of one row, valid in every lane: rest = sum of exp(x - max) over every column
// but the first argmax, so log(sum) = log1p(rest) keeps full precision on confident rows (see
// kernels/cpu/softmax.cpp). The first argmax is the smallest column holding the max (a min tree).
template <class T>
__device__ inline void row_max_rest(const T* in, long long cols, T& mx, T& rest) {
  const int lane = threadIdx.x % 32;
  mx = in[0];
  for (long long c = lane; c < cols; c += 32) mx = in[c] > mx ? in[c] : mx;
  mx = warp_max(mx);
  long long arg = cols;
  for (long long c = lane; c < cols; c += 32) {
    if (in[c] == mx) {
      arg = c;
      break;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const long long other = __shfl_xor_sync(0xffffffffu, arg, offset);
    arg = other < arg ? other : arg;
  }
  rest = T(0);
  for (long long c = lane; c < cols; c += 32) {
    if (c != arg) rest += exp(in[c] - mx);
  }
  rest = warp_sum(rest);
}

template <class T>
__global__ void softmax_kernel(const T* x, T* y, long long rows, long long cols, bool log_output) {
  const long long warps = static_cast<long long>(gridDim.x) * rows_per_block;
  for (long long r = blockIdx.x * static_cast<long long>(rows_per_block) + threadIdx.x / 32; r < rows; r += warps) {
    const T* in = x + r * cols;
    T* out = y + r * cols;
    T mx, rest;
    row_max_rest(in, cols, mx, rest);
    const int lane = threadIdx.x % 32;
    if (log_output) {
      // (x - max) - log1p(rest): see kernels/cpu/softmax.cpp.
      const T log_sum = log1p(rest);
      for (long long c = lane; c < cols; c += 32) out[c] = (in[c] - mx) - log_sum;
    } else {
      const T sum = T(1) + rest;
      for (long long c = lane; c < cols; c += 32) out[c] = exp(in[c] - mx) / sum;
    }
  }
}

template <class T>
__global__ void cross_entropy_kernel(const T* logits, const long long* labels, T* out, long long rows, long long cols,
                                     DeviceErrorRecord* record) {
  __shared__ T scratch[32];
  const int lane = threadIdx.x % 32;
  const long long warps = blockDim.x / 32;
  T total = T(0);  // this warp's rows, in row order (same value in every lane)
  for (long long r = threadIdx.x / 32; r < rows; r += warps) {
    const long long label = labels[r];
    T loss;
    if (label < 0 || label >= cols) {
      if (lane == 0) {
        report_device_error(record, DeviceErrorCode::label_out_of_range, DeviceErrorOp::cross_entropy, label, r, cols);
      }
      loss = quiet_nan<T>();
    } else {
      T mx, rest;
      row_max_rest(logits + r * cols, cols, mx, rest);
      loss = log1p(rest) - (logits[r * cols + label] - mx);
    }
    total += loss;
  }
  if (lane != 0) total = T(0);
  total = block_sum(total, scratch);
  if (threadIdx.x == 0) out[0] = total / static_cast<T>(rows);
}

template <class T>
__global__ void one_hot_kernel(const long long* labels, T* out, long long rows, long long cols,
                               DeviceErrorRecord* record) {
  METATAPE_GRID_LOOP(i, rows * cols) {
    const long long r = i / cols;
    const long long c = i % cols;
    const long long label = labels[r];
    if (label < 0 || label >= cols) {
      if (c == 0) {
        report_device_error(record, DeviceErrorCode::label_out_of_range, DeviceErrorOp::one_hot, label, r, cols);
      }
      out[i] = quiet_nan<T>();
    } else {
      out[i] = c == label ? T(1) : T(0);
    }
  }
}

}  // namespace

void softmax(const View& x, const View& out, bool log) {
  const long long cols = x.shape.last();
  const long long rows = cols == 0 ? 0 : x.numel() / cols;
  if (rows == 0) return;
  const unsigned grid =
      static_cast<unsigned>(std::min<long long>((rows + rows_per_block - 1) / rows_per_block, max_blocks));
  with_float_type(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    softmax_kernel<T><<<grid, block_threads, 0, current_stream()>>>(x.as<T>(), out.as<T>(), rows, cols, log);
  });
  METATAPE_CUDA_LAUNCH_CHECK(log ? "log_softmax" : "softmax", &x, &out);
}

void cross_entropy(const View& logits, const View& labels, const View& out) {
  const long long rows = logits.shape[0];
  const long long cols = logits.shape[1];
  if (rows == 0 || cols == 0) {
    fail("cross_entropy: logits " + logits.shape.str() + " need at least one row and one class");
  }
  const unsigned threads = static_cast<unsigned>(std::min<long long>(rows, 32) * 32);
  DeviceErrorRecord* record = device_error_record();
  with_float_type(logits.dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_kernel<T><<<1, threads, 0, current_stream()>>>(
        logits.as<T>(), reinterpret_cast<const long long*>(labels.data), out.as<T>(), rows, cols, record);
  });
  METATAPE_CUDA_LAUNCH_CHECK("cross_entropy", &logits, &labels, &out);
}

void one_hot(const View& labels, const View& out) {
  const long long rows = out.shape[0];
  const long long cols = out.shape[1];
  if (rows * cols == 0) return;
  DeviceErrorRecord* record = device_error_record();
  with_float_type(out.dtype, "one_hot", [&](auto tag) {
    using T = decltype(tag);
    one_hot_kernel<T><<<blocks_for(rows * cols), block_threads, 0, current_stream()>>>(
        reinterpret_cast<const long long*>(labels.data), out.as<T>(), rows, cols, record);
  });
  METATAPE_CUDA_LAUNCH_CHECK("one_hot", &labels, &out);
}

}  // namespace metatape::kernels::cuda
