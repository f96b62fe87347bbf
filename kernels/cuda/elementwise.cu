// unary, binary, broadcast_to and where on CUDA: one thread per output element (grid-stride), with
// the math of kernels/cpu/elementwise.cpp. Same-shape and scalar-operand cases skip the broadcast
// index arithmetic; f32 ones whose element count is a multiple of 4 and whose pointers are 16-byte
// aligned move float4 vectors (one 128-bit load per operand per thread). Outputs may alias inputs of
// the same shape (each element is read, then written by the same thread).
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

template <class T>
__device__ inline T apply_unary(UnaryOp op, T x, T a, T b) {
  switch (op) {
    case UnaryOp::affine:
      return a * x + b;
    case UnaryOp::exp:
      return exp(x);
    case UnaryOp::log:
      return log(x);
    case UnaryOp::sqrt:
      return sqrt(x);
    case UnaryOp::square:
      return x * x;
    case UnaryOp::abs:
      return fabs(x);
    case UnaryOp::sign:
      return static_cast<T>((x > T(0)) - (x < T(0)));
    case UnaryOp::pow:
      return pow(x, a);
    case UnaryOp::relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::leaky_relu:
      return x > T(0) ? x : a * x;
    case UnaryOp::elu:
      return x > T(0) ? x : a * expm1(x);
    case UnaryOp::tanh:
      return tanh(x);
    case UnaryOp::sigmoid:
      return T(1) / (T(1) + exp(-x));
    case UnaryOp::softplus:
      return (x < T(0) ? T(0) : x) + log1p(exp(-fabs(x)));
    case UnaryOp::gelu: {
      const T c = T(0.7978845608028654);  // sqrt(2 / pi)
      return T(0.5) * x * (T(1) + tanh(c * (x + T(0.044715) * x * x * x)));
    }
    case UnaryOp::step:
      return x > a ? T(1) : T(0);
    case UnaryOp::in_range:
      return (x > a && x < b) ? T(1) : T(0);
    case UnaryOp::clamp: {  // std::min(std::max(x, a), b), NaN behaviour included
      const T lo = x < a ? a : x;
      return b < lo ? b : lo;
    }
    case UnaryOp::reciprocal:
      return T(1) / x;
  }
  return x;
}

template <class T>
__device__ inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    // std::max semantics of the CPU reference: max(a, b) = a < b ? b : a (NaN in a propagates).
    case BinaryOp::maximum:
      return a < b ? b : a;
    case BinaryOp::minimum:
      return b < a ? b : a;
    case BinaryOp::equal:
      return a == b ? T(1) : T(0);
    case BinaryOp::greater:
      return a > b ? T(1) : T(0);
  }
  return a;
}

template <class T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* y, long long n, T a, T b) {
  METATAPE_GRID_LOOP(i, n) y[i] = apply_unary(op, x[i], a, b);
}

__global__ void unary_vec4_kernel(UnaryOp op, const float4* x, float4* y, long long n4, float a, float b) {
  METATAPE_GRID_LOOP(i, n4) {
    float4 v = x[i];
    v.x = apply_unary(op, v.x, a, b);
    v.y = apply_unary(op, v.y, a, b);
    v.z = apply_unary(op, v.z, a, b);
    v.w = apply_unary(op, v.w, a, b);
    y[i] = v;
  }
}

// b_scalar: b is one float broadcast to every element (read once per thread).
__global__ void binary_vec4_kernel(BinaryOp op, const float4* a, const float4* b, const float* b_scalar, float4* out,
                                   long long n4) {
  METATAPE_GRID_LOOP(i, n4) {
    const float4 va = a[i];
    float4 vb;
    if (b_scalar != nullptr) {
      const float s = *b_scalar;
      vb = make_float4(s, s, s, s);
    } else {
      vb = b[i];
    }
    out[i] = make_float4(apply_binary(op, va.x, vb.x), apply_binary(op, va.y, vb.y), apply_binary(op, va.z, vb.z),
                         apply_binary(op, va.w, vb.w));
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// mode 0: a and b have out's shape; 1: b is one element; 2: a is one element; 3: broadcast map.
template <class T>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, T* out, long long n, int mode, BroadcastMap map) {
  METATAPE_GRID_LOOP(i, n) {
    T va, vb;
    if (mode == 0) {
      va = a[i];
      vb = b[i];
    } else if (mode == 1) {
      va = a[i];
      vb = b[0];
    } else if (mode == 2) {
      va = a[0];
      vb = b[i];
    } else {
      long long off[2];
      broadcast_offsets(map, i, 2, off);
      va = a[off[0]];
      vb = b[off[1]];
    }
    out[i] = apply_binary(op, va, vb);
  }
}

template <class T>
__global__ void broadcast_kernel(const T* x, T* out, long long n, BroadcastMap map) {
  METATAPE_GRID_LOOP(i, n) {
    long long off[1];
    broadcast_offsets(map, i, 1, off);
    out[i] = x[off[0]];
  }
}

template <class T>
__global__ void where_kernel(const T* mask, const T* a, const T* b, T* out, long long n, BroadcastMap map) {
  METATAPE_GRID_LOOP(i, n) {
    long long off[3];
    broadcast_offsets(map, i, 3, off);
    out[i] = mask[off[2]] != T(0) ? a[off[0]] : b[off[1]];
  }
}

}  // namespace

void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  const long long n = x.numel();
  if (n == 0) return;
  with_float_type(x.dtype, unary_op_name(op), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      if (n % 4 == 0 && aligned16(x.data) && aligned16(out.data)) {
        unary_vec4_kernel<<<blocks_for(n / 4), block_threads, 0, current_stream()>>>(
            op, static_cast<const float4*>(x.data), static_cast<float4*>(out.data), n / 4, static_cast<float>(alpha),
            static_cast<float>(beta));
        return;
      }
    }
    unary_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(op, x.as<T>(), out.as<T>(), n,
                                                                           static_cast<T>(alpha), static_cast<T>(beta));
  });
  METATAPE_CUDA_LAUNCH_CHECK(unary_op_name(op), &x, &out);
}

void binary(BinaryOp op, const View& a, const View& b, const View& out) {
  const long long n = out.numel();
  if (n == 0) return;
  int mode = 3;
  if (a.shape == out.shape && b.shape == out.shape)
    mode = 0;
  else if (a.shape == out.shape && b.numel() == 1)
    mode = 1;
  else if (b.shape == out.shape && a.numel() == 1)
    mode = 2;
  const BroadcastMap map = mode == 3 ? broadcast_map(out.shape, {&a.shape, &b.shape}) : BroadcastMap{};
  with_float_type(out.dtype, binary_op_name(op), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      if ((mode == 0 || mode == 1) && n % 4 == 0 && aligned16(a.data) && aligned16(out.data) &&
          (mode == 1 || aligned16(b.data))) {
        binary_vec4_kernel<<<blocks_for(n / 4), block_threads, 0, current_stream()>>>(
            op, static_cast<const float4*>(a.data), static_cast<const float4*>(b.data),
            mode == 1 ? static_cast<const float*>(b.data) : nullptr, static_cast<float4*>(out.data), n / 4);
        return;
      }
    }
    binary_kernel<T>
        <<<blocks_for(n), block_threads, 0, current_stream()>>>(op, a.as<T>(), b.as<T>(), out.as<T>(), n, mode, map);
  });
  METATAPE_CUDA_LAUNCH_CHECK(binary_op_name(op), &a, &b, &out);
}

void broadcast_to(const View& x, const View& out) {
  const long long n = out.numel();
  if (n == 0) return;
  const BroadcastMap map = broadcast_map(out.shape, {&x.shape});
  with_float_type(out.dtype, "expand", [&](auto tag) {
    using T = decltype(tag);
    broadcast_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(x.as<T>(), out.as<T>(), n, map);
  });
  METATAPE_CUDA_LAUNCH_CHECK("expand", &x, &out);
}

void where(const View& mask, const View& a, const View& b, const View& out) {
  const long long n = out.numel();
  if (n == 0) return;
  const BroadcastMap map = broadcast_map(out.shape, {&a.shape, &b.shape, &mask.shape});
  with_float_type(out.dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    where_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(mask.as<T>(), a.as<T>(), b.as<T>(),
                                                                           out.as<T>(), n, map);
  });
  METATAPE_CUDA_LAUNCH_CHECK("where", &mask, &a, &b, &out);
}

}  // namespace metatape::kernels::cuda
