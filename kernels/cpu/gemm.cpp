// CPU reference for gemm (Eigen) and pairwise squared distances.
#include <Eigen/Core>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/eigen_maps.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {


std::int64_t batch_of(const View& v) { return v.shape.rank == 3 ? v.shape[0] : 1; }
std::int64_t rows_of(const View& v) { return v.shape[v.shape.rank - 2]; }
std::int64_t cols_of(const View& v) { return v.shape[v.shape.rank - 1]; }

}  // namespace

void gemm(const View& a, bool trans_a, const View& b, bool trans_b, const View& c, double alpha, double beta) {
  with_float_type(c.dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t batch = batch_of(c);
    const std::int64_t a_step = batch_of(a) == 1 ? 0 : rows_of(a) * cols_of(a);
    const std::int64_t b_step = batch_of(b) == 1 ? 0 : rows_of(b) * cols_of(b);
    const std::int64_t c_step = rows_of(c) * cols_of(c);
    for (std::int64_t t = 0; t < batch; ++t) {
      MapC<T> ma(a.as<T>() + t * a_step, rows_of(a), cols_of(a));
      MapC<T> mb(b.as<T>() + t * b_step, rows_of(b), cols_of(b));
      Map<T> mc(c.as<T>() + t * c_step, rows_of(c), cols_of(c));
      const T al = static_cast<T>(alpha);
      if (beta == 0.0) {
        // Assigned, not scaled and added to: c's old contents are never read. (Eigen's GEMM kernel
        // itself only accumulates, so for products above its small-size threshold it clears c before
        // accumulating; callers that have a useful starting value, such as linear's bias, pass it in c
        // with beta 1 instead.)
        if (!trans_a && !trans_b)
          mc.noalias() = al * (ma * mb);
        else if (trans_a && !trans_b)
          mc.noalias() = al * (ma.transpose() * mb);
        else if (!trans_a && trans_b)
          mc.noalias() = al * (ma * mb.transpose());
        else
          mc.noalias() = al * (ma.transpose() * mb.transpose());
      } else {
        if (beta != 1.0) mc *= static_cast<T>(beta);  // beta 1: accumulate into c as it is
        if (!trans_a && !trans_b)
          mc.noalias() += al * (ma * mb);
        else if (trans_a && !trans_b)
          mc.noalias() += al * (ma.transpose() * mb);
        else if (!trans_a && trans_b)
          mc.noalias() += al * (ma * mb.transpose());
        else
          mc.noalias() += al * (ma.transpose() * mb.transpose());
      }
    }
  });
}

void pairwise_sqdist(const View& a, const View& b, const View& out) {
  with_float_type(out.dtype, "pairwise_sqdist", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t batch = batch_of(out);
    const std::int64_t n = rows_of(a), m = rows_of(b), d = cols_of(a);
    const std::int64_t a_step = batch_of(a) == 1 ? 0 : n * d;
    const std::int64_t b_step = batch_of(b) == 1 ? 0 : m * d;
    for (std::int64_t t = 0; t < batch; ++t) {
      const T* pa = a.as<T>() + t * a_step;
      const T* pb = b.as<T>() + t * b_step;
      T* po = out.as<T>() + t * n * m;
      for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t j = 0; j < m; ++j) {
          T acc = T(0);
          for (std::int64_t k = 0; k < d; ++k) {
            const T diff = pa[i * d + k] - pb[j * d + k];
            acc += diff * diff;
          }
          po[i * m + j] = acc;
        }
      }
    }
  });
}

}  // namespace metatape::kernels::cpu
