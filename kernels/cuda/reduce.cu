// sum_to and max_along on CUDA. Deterministic: every output is summed in an order fixed by the shapes
// alone (per-thread strided partial sums, then a fixed shuffle tree), never with atomics, so the same
// inputs give bit-identical results run to run. Long sums into few outputs split each output into G
// chunks (pass 1 writes M x G partials to a scratch block, pass 2 sums them in order).
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

// x viewed as 4 dims (left-padded). Output o enumerates the kept dims in row-major order, r the
// reduced ones; x offset = offset(kept, o) + offset(red, r). mode 1: the reduced dims are trailing
// (offset = o * R + r); mode 2: they are leading (offset = r * M + o); mode 0: general.
struct ReducePlan {
  long long kept[4];
  long long red[4];
  long long xs[4];
  int mode;
};

__device__ inline long long offset_of(const long long* dims, const long long* xs, long long idx) {
  long long off = 0;
  for (int i = 3; i >= 0; --i) {
    off += (idx % dims[i]) * xs[i];
    idx /= dims[i];
  }
  return off;
}

__device__ inline long long x_offset(const ReducePlan& p, long long o, long long r, long long M, long long R) {
  if (p.mode == 1) return o * R + r;
  if (p.mode == 2) return r * M + o;
  return offset_of(p.kept, p.xs, o) + offset_of(p.red, p.xs, r);
}

// One thread per output, sequential over r: for short reductions.
template <class T>
__global__ void sum_threads_kernel(const T* x, T* out, long long M, long long R, ReducePlan p) {
  METATAPE_GRID_LOOP(o, M) {
    T acc = T(0);
    for (long long r = 0; r < R; ++r) acc += x[x_offset(p, o, r, M, R)];
    out[o] = acc;
  }
}

// One block per (output, chunk) job; job = o * G + g writes out[job].
template <class T>
__global__ void sum_blocks_kernel(const T* x, T* out, long long M, long long R, long long G, long long chunk,
                                  ReducePlan p) {
  __shared__ T scratch[32];
  for (long long job = blockIdx.x; job < M * G; job += gridDim.x) {
    const long long o = job / G;
    const long long begin = (job % G) * chunk;
    const long long end = begin + chunk < R ? begin + chunk : R;
    T acc = T(0);
    for (long long r = begin + threadIdx.x; r < end; r += blockDim.x) acc += x[x_offset(p, o, r, M, R)];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[job] = acc;
  }
}

template <class T>
__global__ void max_kernel(const T* x, T* values, long long* indices, long long outer, long long len, long long inner) {
  METATAPE_GRID_LOOP(i, outer * inner) {
    const long long o = i / inner;
    const long long j = i % inner;
    const T* base = x + o * len * inner + j;
    long long best = 0;
    T best_value = base[0];
    for (long long k = 1; k < len; ++k) {
      const T v = base[k * inner];
      if (v > best_value) {  // ties and NaN keep the first index, as the CPU reference
        best = k;
        best_value = v;
      }
    }
    values[i] = best_value;
    indices[i] = best;
  }
}

ReducePlan make_plan(const Shape& x, const Shape& out, long long M, long long R) {
  ReducePlan p{};
  const Shape px = pad_rank(x, max_rank);
  const Shape po = pad_rank(out, max_rank);
  long long stride = 1;
  bool reduced[4];
  for (int i = 3; i >= 0; --i) {
    reduced[i] = po[i] == 1 && px[i] != 1;
    p.kept[i] = reduced[i] ? 1 : px[i];
    p.red[i] = reduced[i] ? px[i] : 1;
    p.xs[i] = stride;
    stride *= px[i];
  }
  // Trailing (leading) when no kept dim of size > 1 follows (precedes) a reduced dim.
  bool trailing = true, leading = true;
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      if (reduced[i] && p.kept[j] > 1) trailing = false;
      if (reduced[j] && p.kept[i] > 1) leading = false;
    }
  }
  p.mode = (M == 1 || trailing) ? 1 : (R == 1 || leading) ? 2 : 0;
  return p;
}

unsigned threads_for(long long R) {
  const long long t = R >= 256 ? 256 : (R + 31) / 32 * 32;
  return static_cast<unsigned>(t);
}

}  // namespace

void sum_to(const View& x, const View& out) {
  const long long M = out.numel();
  if (M == 0) return;
  const long long R = x.numel() / M;
  if (M * R != x.numel()) {
    fail("sum_to: output " + out.shape.str() + " does not broadcast to the input " + x.shape.str());
  }
  if (R == 0) {
    fill(out, 0.0);
    return;
  }
  const ReducePlan plan = make_plan(x.shape, out.shape, M, R);
  const cudaStream_t stream = current_stream();
  with_float_type(x.dtype, "sum_to", [&](auto tag) {
    using T = decltype(tag);
    if (R <= 32) {
      sum_threads_kernel<T><<<blocks_for(M), block_threads, 0, stream>>>(x.as<T>(), out.as<T>(), M, R, plan);
      return;
    }
    const long long G = (M < 64 && R >= 65536) ? std::min<long long>((R + 16383) / 16384, 1024) : 1;
    const long long chunk = (R + G - 1) / G;
    const unsigned grid = static_cast<unsigned>(std::min<long long>(M * G, max_blocks));
    if (G == 1) {
      sum_blocks_kernel<T><<<grid, threads_for(R), 0, stream>>>(x.as<T>(), out.as<T>(), M, R, 1, R, plan);
      return;
    }
    CachingAllocator& allocator = CachingAllocator::instance();
    T* partial = static_cast<T*>(allocator.allocate(static_cast<std::size_t>(M * G) * sizeof(T)));
    sum_blocks_kernel<T><<<grid, threads_for(chunk), 0, stream>>>(x.as<T>(), partial, M, R, G, chunk, plan);
    ReducePlan rows{};
    for (int i = 0; i < 4; ++i) rows.kept[i] = rows.red[i] = rows.xs[i] = 1;
    rows.mode = 1;
    sum_blocks_kernel<T><<<static_cast<unsigned>(std::min<long long>(M, max_blocks)), threads_for(G), 0, stream>>>(
        partial, out.as<T>(), M, G, 1, G, rows);
    allocator.deallocate(partial);  // stream-ordered: reused only by later work on this stream
  });
  METATAPE_CUDA_LAUNCH_CHECK("sum_to", &x, &out);
}

void max_along(const View& x, int axis, const View& values, const View& indices) {
  long long outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= x.shape[i];
  for (int i = axis + 1; i < x.shape.rank; ++i) inner *= x.shape[i];
  const long long len = x.shape[axis];
  if (outer * inner == 0) return;
  if (len == 0) fail("max: axis " + std::to_string(axis) + " of " + x.shape.str() + " is empty");
  with_float_type(x.dtype, "max", [&](auto tag) {
    using T = decltype(tag);
    max_kernel<T><<<blocks_for(outer * inner), block_threads, 0, current_stream()>>>(
        x.as<T>(), values.as<T>(), reinterpret_cast<long long*>(indices.data), outer, len, inner);
  });
  METATAPE_CUDA_LAUNCH_CHECK("max", &x, &values, &indices);
}

}  // namespace metatape::kernels::cuda
