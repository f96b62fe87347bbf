// The optimizer updates on CUDA: the fused inner SGD step (one launch instead of mul + sub) and
// Adam / AdamW over a flat buffer (one launch for every parameter of a flat buffer). Same formulas and
// operation order as kernels/cpu/update.cpp; bias corrections are computed on the host in double.
#include <cmath>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

template <class T>
__global__ void sgd_kernel(const T* theta, const T* grad, const T* rates, long long rate_step, T lr, T* out,
                           long long n) {
  METATAPE_GRID_LOOP(i, n) {
    const T a = rates == nullptr ? lr : rates[i * rate_step];
    out[i] = theta[i] - a * grad[i];
  }
}

template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, long long n, T lr, T b1, T b2, T bias1, T bias2, T eps, T wd,
                            T decay, bool decoupled) {
  METATAPE_GRID_LOOP(i, n) {
    T gi = g[i];
    T pi = p[i];
    if (decoupled)
      pi *= decay;
    else
      gi += wd * pi;
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - lr * (mi / bias1) / (sqrt(vi / bias2) + eps);
  }
}

}  // namespace

void sgd_update(const View& theta, const View& grad, double lr, const View& out) {
  const long long n = theta.numel();
  if (n == 0) return;
  with_float_type(theta.dtype, "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    sgd_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(theta.as<T>(), grad.as<T>(), nullptr, 0,
                                                                         static_cast<T>(lr), out.as<T>(), n);
  });
  METATAPE_CUDA_LAUNCH_CHECK("sgd_update", &theta, &grad, &out);
}

void sgd_update_rates(const View& theta, const View& grad, const View& lr, const View& out) {
  const long long n = theta.numel();
  if (n == 0) return;
  const long long rate_step = lr.numel() == 1 ? 0 : 1;
  with_float_type(theta.dtype, "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    sgd_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(theta.as<T>(), grad.as<T>(), lr.as<T>(),
                                                                         rate_step, T(0), out.as<T>(), n);
  });
  METATAPE_CUDA_LAUNCH_CHECK("sgd_update", &theta, &grad, &lr, &out);
}

void adam_update(const View& param, const View& grad, const View& m, const View& v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, std::int64_t step, bool decoupled) {
  const long long n = param.numel();
  if (n == 0) return;
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  with_float_type(param.dtype, "adam_update", [&](auto tag) {
    using T = decltype(tag);
    adam_kernel<T><<<blocks_for(n), block_threads, 0, current_stream()>>>(
        param.as<T>(), grad.as<T>(), m.as<T>(), v.as<T>(), n, static_cast<T>(lr), static_cast<T>(beta1),
        static_cast<T>(beta2), static_cast<T>(bias1), static_cast<T>(bias2), static_cast<T>(eps),
        static_cast<T>(weight_decay), static_cast<T>(1.0 - lr * weight_decay), decoupled);
  });
  METATAPE_CUDA_LAUNCH_CHECK("adam_update", &param, &grad, &m, &v);
}

}  // namespace metatape::kernels::cuda
