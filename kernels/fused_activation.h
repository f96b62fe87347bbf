// The activations of the fused MLP kernels, defined once for the CPU reference and the CUDA kernels:
// f(z), f'(z) and f''(z) as functions of the pre-activation z. They match the tape's ops exactly
// (autograd/ops_elementwise.cpp, kernels/cpu/elementwise.cpp): relu and leaky_relu (slope 0.01) have
// derivative 0 (slope) at z = 0 and f'' = 0; elu (alpha 1) uses expm1; gelu is the tanh
// approximation 0.5 z (1 + tanh(c (z + k z^3))).
#pragma once

#include <cmath>

#include "kernels/fused_adapt.h"

#if defined(__CUDACC__)
#define METATAPE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define METATAPE_HOST_DEVICE inline
#endif

namespace metatape::kernels {

constexpr double fused_leaky_slope = 0.01;  // nn::activate's leaky_relu
constexpr double fused_elu_alpha = 1.0;     // nn::activate's elu

// f, f' and f'' at z, in one call (the reverse passes need all three of the same z).
template <class T>
struct ActivationValues {
  T f, d1, d2;
};

template <class T>
METATAPE_HOST_DEVICE ActivationValues<T> activation_values(FusedActivation a, T z) {
  using std::exp;
  using std::expm1;
  using std::tanh;
  switch (a) {
    case FusedActivation::relu:
      return {z > T(0) ? z : T(0), z > T(0) ? T(1) : T(0), T(0)};
    case FusedActivation::leaky_relu: {
      const T slope = T(fused_leaky_slope);
      return {z > T(0) ? z : slope * z, z > T(0) ? T(1) : slope, T(0)};
    }
    case FusedActivation::elu: {
      if (z > T(0)) return {z, T(1), T(0)};
      const T alpha = T(fused_elu_alpha);
      const T y = alpha * expm1(z);
      return {y, y + alpha, y + alpha};
    }
    case FusedActivation::tanh: {
      const T t = tanh(z);
      const T d = T(1) - t * t;
      return {t, d, T(-2) * t * d};
    }
    case FusedActivation::sigmoid: {
      const T s = T(1) / (T(1) + exp(-z));
      const T d = s * (T(1) - s);
      return {s, d, d * (T(1) - T(2) * s)};
    }
    case FusedActivation::gelu: {
      // u = c (z + k z^3), f = 0.5 z (1 + tanh u),
      // f' = 0.5 (1 + t) + 0.5 z (1 - t^2) u',  f'' = (1 - t^2) (u' - z t u'^2 + 0.5 z u'').
      const T c = T(0.7978845608028654), k = T(0.044715);
      const T z2 = z * z;
      const T t = tanh(c * (z + k * z2 * z));
      const T sech2 = T(1) - t * t;
      const T du = c * (T(1) + T(3) * k * z2);
      const T ddu = T(6) * c * k * z;
      return {T(0.5) * z * (T(1) + t), T(0.5) * (T(1) + t) + T(0.5) * z * sech2 * du,
              sech2 * (du - z * t * du * du + T(0.5) * z * ddu)};
    }
    case FusedActivation::none:
      break;
  }
  return {z, T(1), T(0)};
}

}  // namespace metatape::kernels
