// CPU reference for the optimizer updates: the fused inner SGD step and Adam / AdamW.
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {

void sgd_update(const View& theta, const View& grad, double lr, const View& out) {
  with_float_type(theta.dtype, "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    const T* p = theta.as<T>();
    const T* g = grad.as<T>();
    T* o = out.as<T>();
    const T a = static_cast<T>(lr);
    const std::int64_t n = theta.numel();
    for (std::int64_t i = 0; i < n; ++i) o[i] = p[i] - a * g[i];
  });
}

void sgd_update_rates(const View& theta, const View& grad, const View& lr, const View& out) {
  with_float_type(theta.dtype, "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    const T* p = theta.as<T>();
    const T* g = grad.as<T>();
    const T* a = lr.as<T>();
    T* o = out.as<T>();
    const std::int64_t n = theta.numel();
    const std::int64_t step = lr.numel() == 1 ? 0 : 1;
    for (std::int64_t i = 0; i < n; ++i) o[i] = p[i] - a[i * step] * g[i];
  });
}

void adam_update(const View& param, const View& grad, const View& m, const View& v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, std::int64_t step, bool decoupled) {
  with_float_type(param.dtype, "adam_update", [&](auto tag) {
    using T = decltype(tag);
    T* p = param.as<T>();
    const T* g = grad.as<T>();
    T* pm = m.as<T>();
    T* pv = v.as<T>();
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    const T bias1 = static_cast<T>(1.0 - std::pow(beta1, static_cast<double>(step)));
    const T bias2 = static_cast<T>(1.0 - std::pow(beta2, static_cast<double>(step)));
    const T rate = static_cast<T>(lr), e = static_cast<T>(eps), wd = static_cast<T>(weight_decay);
    const T decay = static_cast<T>(1.0 - lr * weight_decay);
    const std::int64_t n = param.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      T gi = g[i];
      T pi = p[i];
      if (decoupled)
        pi *= decay;
      else
        gi += wd * pi;
      pm[i] = b1 * pm[i] + (T(1) - b1) * gi;
      pv[i] = b2 * pv[i] + (T(1) - b2) * gi * gi;
      p[i] = pi - rate * (pm[i] / bias1) / (std::sqrt(pv[i] / bias2) + e);
    }
  });
}

}  // namespace metatape::kernels::cpu
