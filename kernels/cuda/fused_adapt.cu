// fused_adapt on CUDA (contract: kernels/fused_adapt.h): ONE launch, one 256-thread block per task,
// the whole inner loop in shared memory. f32 only.
//
// Shared-memory layout of a block, in floats (ld(w) = w | 1: odd row strides keep rows of a
// weight or activation matrix in distinct banks when threads walk down a column):
//   for each layer l: W_l (out_l rows, stride ld(in_l)), then b_l (out_l)
//   X    (rows, stride ld(in))                  the task's support rows (query chunks at the end)
//   H_l  (rows, stride ld(size_l)), l = 1..L-1  hidden activations (post-activation)
//   DA, DB (rows, stride ld(widest out))        output / delta buffers, ping-pong in backward
// Size: kernels::fused_shared_bytes (kernels/cpu/fused_adapt.cpp computes the same sum).
//
// One inner step, phases separated by __syncthreads():
//   forward layer l: act[l+1] = f(act[l] W_l^T + b_l) (the last layer writes its output to DA)
//   loss gradient in place on DA (softmax - one_hot) / rows, or 2 (y_hat - y) / (rows * out)
//   backward, l = L-1..0: (a) D_next = (D_cur W_l) (.) f'(act[l])   [l > 0; reads W_l]
//                         (b) W_l -= rate (.) D_cur^T act[l], b_l -= rate (.) colsum(D_cur)
//   so every layer's gradient uses the weights of before the step, exactly one SGD step.
// Each phase is a small block GEMM: a thread owns a TM x TN tile of interleaved rows and columns
// (rows tm, tm + mq, ...; columns tn, tn + nq, ...), so a warp reads consecutive columns.
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/runtime.h"
#include "kernels/error.h"
#include "kernels/fused_adapt.h"

namespace metatape::kernels::cuda {
namespace {

constexpr int fused_block = 256;
constexpr int max_layers = fused_max_sizes - 1;

struct FusedLayout {
  int layers = 0;
  int sizes[fused_max_sizes] = {};
  int ld[fused_max_sizes] = {};       // padded strides of act[l] and of W_l's rows (ld[l] = sizes[l] | 1)
  int w_off[max_layers] = {};         // shared offset of W_l; b_l follows at w_off + out * ld[l]
  int g_off[max_layers] = {};         // offset of W_l in the flat (unpadded) parameter row
  int act_off[fused_max_sizes] = {};  // act[0] = X, act[l] = H_l (l = 1..L-1)
  int da_off = 0, db_off = 0, ldd = 0;
  int rows = 0, query_rows = 0, params = 0;
  int steps = 0;
  float lr = 0.f;
  int activation = 0;  // FusedActivation
  int loss = 0;        // FusedLoss
  bool shared_init = true, has_rates = false, has_query = false;
};

__device__ __forceinline__ float act_fn(int a, float z) {
  if (a == static_cast<int>(FusedActivation::relu)) return z > 0.f ? z : 0.f;
  if (a == static_cast<int>(FusedActivation::tanh)) return tanhf(z);
  return z;
}

__device__ __forceinline__ float act_grad(int a, float h) {
  if (a == static_cast<int>(FusedActivation::relu)) return h > 0.f ? 1.f : 0.f;
  if (a == static_cast<int>(FusedActivation::tanh)) return 1.f - h * h;
  return 1.f;
}

// C (M x N) = sum_k a(m, k) b(k, n), handed to epi(m, n, value) once per element. Rows and columns
// beyond M, N are clamped for loading and skipped for the epilogue. No synchronisation inside.
template <int TM, int TN, class A, class B, class Epi>
__device__ __forceinline__ void block_gemm(int M, int N, int K, A a, B b, Epi epi) {
  const int mq = (M + TM - 1) / TM, nq = (N + TN - 1) / TN;
  for (int tile = threadIdx.x; tile < mq * nq; tile += blockDim.x) {
    const int tm = tile / nq, tn = tile % nq;
    int ms[TM], ns[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) ms[i] = min(tm + i * mq, M - 1);
#pragma unroll
    for (int j = 0; j < TN; ++j) ns[j] = min(tn + j * nq, N - 1);
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
    }
    for (int k = 0; k < K; ++k) {
      float av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = a(ms[i], k);
#pragma unroll
      for (int j = 0; j < TN; ++j) bv[j] = b(k, ns[j]);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = tm + i * mq;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int n = tn + j * nq;
        if (n < N) epi(m, n, acc[i][j]);
      }
    }
  }
}

// Forward over `count` rows already in act[0]: hidden layers into H_l, the last layer through
// `last(row, col, value)` (bias included). Ends with a __syncthreads() after every layer.
template <class Last>
__device__ void forward_rows(const FusedLayout& p, float* sm, int count, Last last) {
  for (int l = 0; l < p.layers; ++l) {
    const int in = p.sizes[l], out = p.sizes[l + 1], ldi = p.ld[l];
    const float* x = sm + p.act_off[l];
    const float* w = sm + p.w_off[l];
    const float* bias = w + out * ldi;
    auto a = [=](int m, int k) { return x[m * ldi + k]; };
    auto b = [=](int k, int n) { return w[n * ldi + k]; };
    if (l + 1 < p.layers) {
      float* h = sm + p.act_off[l + 1];
      const int ldo = p.ld[l + 1];
      const int activation = p.activation;
      block_gemm<4, 2>(count, out, in, a, b,
                       [=](int m, int n, float v) { h[m * ldo + n] = act_fn(activation, v + bias[n]); });
    } else {
      block_gemm<4, 2>(count, out, in, a, b, [=](int m, int n, float v) { last(m, n, v + bias[n]); });
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(fused_block)
    fused_adapt_kernel(FusedLayout p, const float* __restrict__ init, const float* __restrict__ rates,
                       const float* __restrict__ support_x, const long long* __restrict__ labels,
                       const float* __restrict__ targets, float* __restrict__ adapted,
                       const float* __restrict__ query_x, float* __restrict__ query_out, DeviceErrorRecord* error) {
  extern __shared__ float sm[];
  const long long task = blockIdx.x;
  const int rows = p.rows;
  const int in0 = p.sizes[0], out_l = p.sizes[p.layers];
  const float* p0 = init + (p.shared_init ? 0 : task * p.params);

  // Parameters and support rows into shared memory.
  for (int l = 0; l < p.layers; ++l) {
    const int in = p.sizes[l], out = p.sizes[l + 1], ldi = p.ld[l];
    float* w = sm + p.w_off[l];
    const float* g = p0 + p.g_off[l];
    for (int i = threadIdx.x; i < out * in; i += blockDim.x) w[(i / in) * ldi + i % in] = g[i];
    for (int j = threadIdx.x; j < out; j += blockDim.x) w[out * ldi + j] = g[out * in + j];
  }
  {
    const float* x = support_x + task * rows * in0;
    float* xs = sm + p.act_off[0];
    for (int i = threadIdx.x; i < rows * in0; i += blockDim.x) xs[(i / in0) * p.ld[0] + i % in0] = x[i];
  }
  __syncthreads();

  float* da = sm + p.da_off;
  float* db = sm + p.db_off;
  const int ldd = p.ldd;
  for (int s = 0; s < p.steps; ++s) {
    forward_rows(p, sm, rows, [=](int m, int n, float v) { da[m * ldd + n] = v; });
    // d(mean loss of the task) / d(output), in place on DA.
    if (p.loss == static_cast<int>(FusedLoss::cross_entropy)) {
      const float inv_rows = 1.f / static_cast<float>(rows);
      for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        float* z = da + r * ldd;
        const long long label = labels[task * rows + r];
        if (label < 0 || label >= out_l) {
          report_device_error(error, DeviceErrorCode::label_out_of_range, DeviceErrorOp::cross_entropy, label,
                              task * rows + r, out_l);
          for (int c = 0; c < out_l; ++c) z[c] = quiet_nan<float>();
          continue;
        }
        float m = z[0];
        for (int c = 1; c < out_l; ++c) m = fmaxf(m, z[c]);
        float sum = 0.f;
        for (int c = 0; c < out_l; ++c) sum += expf(z[c] - m);
        const float inv_sum = 1.f / sum;
        for (int c = 0; c < out_l; ++c) {
          z[c] = (expf(z[c] - m) * inv_sum - (c == label ? 1.f : 0.f)) * inv_rows;
        }
      }
    } else {
      const float scale = 2.f / static_cast<float>(rows * out_l);
      const float* y = targets + task * rows * out_l;
      for (int i = threadIdx.x; i < rows * out_l; i += blockDim.x) {
        float& z = da[(i / out_l) * ldd + i % out_l];
        z = scale * (z - y[i]);
      }
    }
    __syncthreads();
    float* cur = da;
    float* nxt = db;
    for (int l = p.layers - 1; l >= 0; --l) {
      const int in = p.sizes[l], out = p.sizes[l + 1], ldi = p.ld[l];
      float* w = sm + p.w_off[l];
      float* bias = w + out * ldi;
      const float* x = sm + p.act_off[l];
      const float* dcur = cur;
      if (l > 0) {
        const int activation = p.activation;
        float* dn = nxt;
        block_gemm<4, 2>(
            rows, in, out, [=](int m, int j) { return dcur[m * ldd + j]; },
            [=](int j, int n) { return w[j * ldi + n]; },
            [=](int m, int n, float v) { dn[m * ldd + n] = v * act_grad(activation, x[m * ldi + n]); });
        __syncthreads();
      }
      const float lr = p.lr;
      const float* rw = p.has_rates ? rates + p.g_off[l] : nullptr;
      block_gemm<4, 4>(
          out, in, rows, [=](int j, int r) { return dcur[r * ldd + j]; }, [=](int r, int n) { return x[r * ldi + n]; },
          [=](int j, int n, float v) { w[j * ldi + n] -= (rw ? rw[j * in + n] : lr) * v; });
      for (int j = threadIdx.x; j < out; j += blockDim.x) {
        float sb = 0.f;
        for (int r = 0; r < rows; ++r) sb += dcur[r * ldd + j];
        bias[j] -= (rw ? rw[out * in + j] : lr) * sb;
      }
      __syncthreads();
      float* t = cur;
      cur = nxt;
      nxt = t;
    }
  }

  // Adapted parameters out (unpadded flat layout).
  float* dst = adapted + task * p.params;
  for (int l = 0; l < p.layers; ++l) {
    const int in = p.sizes[l], out = p.sizes[l + 1], ldi = p.ld[l];
    const float* w = sm + p.w_off[l];
    float* g = dst + p.g_off[l];
    for (int i = threadIdx.x; i < out * in; i += blockDim.x) g[i] = w[(i / in) * ldi + i % in];
    for (int j = threadIdx.x; j < out; j += blockDim.x) g[out * in + j] = w[out * ldi + j];
  }
  if (!p.has_query) return;
  // Query predictions in chunks of `rows` rows through the same buffers.
  const int qrows = p.query_rows;
  for (int start = 0; start < qrows; start += rows) {
    const int count = min(rows, qrows - start);
    const float* x = query_x + (task * qrows + start) * in0;
    float* xs = sm + p.act_off[0];
    for (int i = threadIdx.x; i < count * in0; i += blockDim.x) xs[(i / in0) * p.ld[0] + i % in0] = x[i];
    __syncthreads();
    float* out = query_out + (task * qrows + start) * out_l;
    forward_rows(p, sm, count, [=](int m, int n, float v) { out[m * out_l + n] = v; });
  }
}

int checked_int(std::int64_t v, const char* what) {
  if (v > 0x7fffffff) {
    fail(std::string("fused_adapt: ") + what + " " + std::to_string(v) +
         " is over the kernel's int32 index limit of 2147483647");
  }
  return static_cast<int>(v);
}

}  // namespace

std::size_t fused_max_shared_bytes() {
  static std::size_t bytes = [] {
    int device = 0, value = 0;
    METATAPE_CUDA_CHECK(cudaGetDevice(&device), "fused_adapt", "cudaGetDevice");
    METATAPE_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "fused_adapt",
                        "cudaDevAttrMaxSharedMemoryPerBlockOptin");
    return static_cast<std::size_t>(value);
  }();
  return bytes;
}

void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out) {
  // Views were checked by the dispatch point (kernels/cpu/fused_adapt.cpp).
  FusedLayout p;
  p.layers = static_cast<int>(config.sizes.size()) - 1;
  const std::int64_t tasks = support_x.shape[0];
  p.rows = checked_int(support_x.shape[1], "support rows");
  p.params = checked_int(fused_param_count(config.sizes), "parameter count");
  p.query_rows = query_x.data ? checked_int(query_x.shape[1], "query rows") : 0;
  p.steps = config.steps;
  p.lr = static_cast<float>(config.lr);
  p.activation = static_cast<int>(config.activation);
  p.loss = static_cast<int>(config.loss);
  p.shared_init = init.shape.rank == 1;
  p.has_rates = rates.data != nullptr;
  p.has_query = query_x.data != nullptr;
  for (int l = 0; l <= p.layers; ++l) {
    p.sizes[l] = checked_int(config.sizes[static_cast<std::size_t>(l)], "layer size");
    p.ld[l] = p.sizes[l] | 1;
  }
  std::int64_t at = 0, flat = 0;
  int widest = 0;
  for (int l = 0; l < p.layers; ++l) {
    p.w_off[l] = checked_int(at, "shared offset");
    p.g_off[l] = checked_int(flat, "parameter offset");
    at += static_cast<std::int64_t>(p.sizes[l + 1]) * p.ld[l] + p.sizes[l + 1];
    flat += static_cast<std::int64_t>(p.sizes[l + 1]) * p.sizes[l] + p.sizes[l + 1];
    widest = std::max(widest, p.sizes[l + 1]);
  }
  for (int l = 0; l < p.layers; ++l) {
    p.act_off[l] = checked_int(at, "shared offset");
    at += static_cast<std::int64_t>(p.rows) * p.ld[l];
  }
  p.ldd = widest | 1;
  p.da_off = checked_int(at, "shared offset");
  at += static_cast<std::int64_t>(p.rows) * p.ldd;
  p.db_off = checked_int(at, "shared offset");
  at += static_cast<std::int64_t>(p.rows) * p.ldd;
  const std::size_t shared = static_cast<std::size_t>(at) * sizeof(float);
  if (shared != fused_shared_bytes(config, support_x.shape[1])) {
    fail("fused_adapt: internal error: shared layout of " + std::to_string(shared) +
         " bytes disagrees with fused_shared_bytes");
  }
  const std::size_t limit = fused_max_shared_bytes();
  if (shared > limit) {
    fail("fused_adapt: needs " + std::to_string(shared) +
         " bytes of shared memory per block, the "
         "device allows " +
         std::to_string(limit) + " (use fewer support rows or the batched path)");
  }
  if (tasks > 0x7fffffff) fail("fused_adapt: more than 2^31 - 1 tasks in one launch");
  static std::once_flag opt_in;
  std::call_once(opt_in, [&] {
    METATAPE_CUDA_CHECK(
        cudaFuncSetAttribute(fused_adapt_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(limit)),
        "fused_adapt", "cudaFuncAttributeMaxDynamicSharedMemorySize");
  });
  const bool ce = config.loss == FusedLoss::cross_entropy;
  fused_adapt_kernel<<<static_cast<unsigned>(tasks), fused_block, shared, current_stream()>>>(
      p, init.as<float>(), rates.data ? rates.as<float>() : nullptr, support_x.as<float>(),
      ce ? support_y.as<long long>() : nullptr, ce ? nullptr : support_y.as<float>(), adapted.as<float>(),
      query_x.data ? query_x.as<float>() : nullptr, query_out.data ? query_out.as<float>() : nullptr,
      device_error_record());
  METATAPE_CUDA_LAUNCH_CHECK("fused_adapt", &support_x, &adapted);
}

}  // namespace metatape::kernels::cuda
