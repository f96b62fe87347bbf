// Internal to kernels/cuda/*.cu: element-type dispatch, launch geometry, broadcast index maps, warp
// and block reductions with a fixed order (bit-identical results run to run), and launch checks.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/runtime.h"
#include "kernels/error.h"
#include "kernels/view.h"

namespace metatape::kernels::cuda {

constexpr int block_threads = 256;
// Grid-stride loops cover any size; the cap keeps gridDim.x far below its 2^31 - 1 limit.
constexpr std::int64_t max_blocks = 65535;

// for (long long i = global thread index; i < n; i += total threads)
#define METATAPE_GRID_LOOP(i, n)                                                             \
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<long long>(gridDim.x) * blockDim.x)

inline unsigned blocks_for(std::int64_t n, int threads = block_threads) {
  const std::int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min(b, max_blocks)));
}

template <class Fn>
void with_float_type(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      fn(float{});
      return;
    case DType::f64:
      fn(double{});
      return;
    case DType::i64:
      break;
  }
  fail(std::string(op) + ": needs an f32 or f64 tensor, got " + dtype_name(dtype));
}

inline std::string shapes_of(std::initializer_list<const View*> views) {
  std::string s;
  for (const View* v : views) {
    if (!s.empty()) s += ", ";
    s += v->shape.str();
    s += ' ';
    s += dtype_name(v->dtype);
  }
  return s;
}

// After every launch: catches launch-configuration errors without synchronising.
#define METATAPE_CUDA_LAUNCH_CHECK(op, ...) \
  METATAPE_CUDA_CHECK(cudaGetLastError(), (op), ::metatape::kernels::cuda::shapes_of({__VA_ARGS__}))

// Row-major linear index over `dims` (4 dims, left-padded with 1) to element offsets of up to three
// broadcast inputs (stride 0 on broadcast axes). Passed to kernels by value.
struct BroadcastMap {
  long long dims[4];
  long long s[3][4];
};

inline BroadcastMap broadcast_map(const Shape& out, std::initializer_list<const Shape*> inputs) {
  BroadcastMap m{};
  const Shape pout = pad_rank(out, max_rank);
  for (int i = 0; i < 4; ++i) m.dims[i] = pout[i];
  int k = 0;
  for (const Shape* in : inputs) {
    const Shape pin = pad_rank(*in, max_rank);
    long long stride = 1;
    for (int i = 3; i >= 0; --i) {
      m.s[k][i] = (pin[i] == 1 && pout[i] != 1) ? 0 : stride;
      stride *= pin[i];
    }
    ++k;
  }
  return m;
}

__device__ inline void broadcast_offsets(const BroadcastMap& m, long long o, int count, long long* off) {
  long long c3 = o % m.dims[3];
  long long rest = o / m.dims[3];
  long long c2 = rest % m.dims[2];
  rest /= m.dims[2];
  long long c1 = rest % m.dims[1];
  long long c0 = rest / m.dims[1];
  for (int k = 0; k < count; ++k) {
    off[k] = c0 * m.s[k][0] + c1 * m.s[k][1] + c2 * m.s[k][2] + c3 * m.s[k][3];
  }
}

template <class T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <class T>
__device__ inline T warp_max(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block in a fixed tree order; the result is valid in thread 0. blockDim.x must be a
// multiple of 32 and at most 1024. `scratch` holds 32 values of T (shared memory).
template <class T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (blockDim.x == 32) return v;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = threadIdx.x < warps ? scratch[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  return v;
}

// First error wins; the host fetches the record at its next synchronisation.
__device__ inline void report_device_error(DeviceErrorRecord* record, DeviceErrorCode code, DeviceErrorOp op,
                                           long long value, long long position, long long bound) {
  if (atomicCAS(&record->code, 0, -1) == 0) {
    record->op = static_cast<int>(op);
    record->value = value;
    record->position = position;
    record->bound = bound;
    __threadfence();
    atomicExch(&record->code, static_cast<int>(code));
  }
}

template <class T>
__device__ inline T quiet_nan() {
  return T(__longlong_as_double(0x7ff8000000000000LL));
}

}  // namespace metatape::kernels::cuda
