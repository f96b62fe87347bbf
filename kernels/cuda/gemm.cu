// gemm (cuBLAS) and pairwise squared distances on CUDA.
//
// Row-major C (m x n) = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T, so no
// operand is copied or transposed. A rank-3 operand gives a strided batch; a rank-2 operand shared by
// the batch has stride 0. When only A is batched and not transposed, A and C are contiguous stacks of
// rows and the whole batch is one plain GEMM of (batch * m) rows.
//
// cuBLAS handles: one per host thread, created on first use and kept for the thread's life (never
// destroyed during process exit, after the CUDA runtime may be gone). Each (thread, stream) pair gets
// its own 4 MiB workspace from cudaMalloc, set after every stream switch, so cuBLAS never allocates
// while running (graph capture safe).
#include <cublas_v2.h>

#include <climits>
#include <string>
#include <unordered_map>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

constexpr std::size_t cublas_workspace_bytes = std::size_t{4} << 20;

void check_cublas(cublasStatus_t status, int line, const char* what, const std::string& detail) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    fail(std::string("matmul: cuBLAS error ") + cublasGetStatusName(status) + " (" + cublasGetStatusString(status) +
         ") in " + what + " at " + __FILE__ + ":" + std::to_string(line) + " [" + detail + "]");
  }
}

struct ThreadBlas {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  bool bound = false;
  std::unordered_map<cudaStream_t, void*> workspaces;
};
thread_local ThreadBlas thread_blas;

cublasHandle_t blas_for(cudaStream_t stream) {
  ThreadBlas& b = thread_blas;
  if (b.handle == nullptr) check_cublas(cublasCreate(&b.handle), __LINE__, "cublasCreate", "handle");
  if (!b.bound || b.stream != stream) {
    check_cublas(cublasSetStream(b.handle, stream), __LINE__, "cublasSetStream", "stream switch");
    void*& ws = b.workspaces[stream];
    if (ws == nullptr) {
      METATAPE_CUDA_CHECK(cudaMalloc(&ws, cublas_workspace_bytes), "matmul", "cuBLAS workspace");
    }
    check_cublas(cublasSetWorkspace(b.handle, ws, cublas_workspace_bytes), __LINE__, "cublasSetWorkspace", "workspace");
    b.stream = stream;
    b.bound = true;
  }
  return b.handle;
}

long long batch_of(const View& v) { return v.shape.rank == 3 ? v.shape[0] : 1; }
long long rows_of(const View& v) { return v.shape[v.shape.rank - 2]; }
long long cols_of(const View& v) { return v.shape[v.shape.rank - 1]; }

int as_int(long long v, const std::string& detail) {
  if (v > INT_MAX) {
    fail("matmul: dimension " + std::to_string(v) + " is over cuBLAS's limit of " + std::to_string(INT_MAX) + " [" +
         detail + "]");
  }
  return static_cast<int>(v);
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const float* alpha, const float* a, int lda, long long sa, const float* b, int ldb,
                         long long sb, const float* beta, float* c, int ldc, long long sc, int batch) {
  if (batch == 1) return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const double* alpha, const double* a, int lda, long long sa, const double* b, int ldb,
                         long long sb, const double* beta, double* c, int ldc, long long sc, int batch) {
  if (batch == 1) return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

template <class T>
__global__ void pairwise_sqdist_kernel(const T* a, const T* b, T* out, long long batch, long long n, long long m,
                                       long long d, long long a_step, long long b_step) {
  METATAPE_GRID_LOOP(i, batch * n * m) {
    const long long t = i / (n * m);
    const long long row = (i / m) % n;
    const long long col = i % m;
    const T* pa = a + t * a_step + row * d;
    const T* pb = b + t * b_step + col * d;
    T acc = T(0);
    for (long long k = 0; k < d; ++k) {
      const T diff = pa[k] - pb[k];
      acc += diff * diff;
    }
    out[i] = acc;
  }
}

}  // namespace

void gemm(const View& a, bool trans_a, const View& b, bool trans_b, const View& c, double alpha, double beta) {
  auto detail = [&] {
    return "a " + a.shape.str() + (trans_a ? "^T" : "") + ", b " + b.shape.str() + (trans_b ? "^T" : "") + ", c " +
           c.shape.str() + " " + dtype_name(c.dtype);
  };
  if (a.shape.rank < 2 || a.shape.rank > 3 || b.shape.rank < 2 || b.shape.rank > 3 || c.shape.rank < 2 ||
      c.shape.rank > 3) {
    fail("matmul: operands must have rank 2 or 3 [" + detail() + "]");
  }
  long long m = trans_a ? cols_of(a) : rows_of(a);
  const long long k = trans_a ? rows_of(a) : cols_of(a);
  const long long n = trans_b ? rows_of(b) : cols_of(b);
  const long long kb = trans_b ? cols_of(b) : rows_of(b);
  long long batch = batch_of(c);
  if (k != kb || m != rows_of(c) || n != cols_of(c) || (batch_of(a) != 1 && batch_of(a) != batch) ||
      (batch_of(b) != 1 && batch_of(b) != batch)) {
    fail("matmul: shapes do not match [" + detail() + "]");
  }
  if (m == 0 || n == 0 || batch == 0) return;
  long long sa = batch_of(a) == 1 ? 0 : rows_of(a) * cols_of(a);
  const long long sb = batch_of(b) == 1 ? 0 : rows_of(b) * cols_of(b);
  long long sc = m * n;
  if (batch > 1 && sb == 0 && sa != 0 && !trans_a) {  // fold the batch into the rows
    m *= batch;
    batch = 1;
    sa = 0;
    sc = 0;
  }
  const int im = as_int(m, detail()), in = as_int(n, detail()), ik = as_int(k, detail());
  const int ib = as_int(batch, detail());
  const int lda = as_int(std::max<long long>(1, cols_of(a)), detail());
  const int ldb = as_int(std::max<long long>(1, cols_of(b)), detail());
  cublasHandle_t handle = blas_for(current_stream());
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  with_float_type(c.dtype, "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T al = static_cast<T>(alpha);
    const T be = static_cast<T>(beta);
    // Column-major: C^T (n x m) = op_b(B^T) (n x k) * op_a(A^T) (k x m).
    check_cublas(gemm_call(handle, op_b, op_a, in, im, ik, &al, b.as<T>(), ldb, sb, a.as<T>(), lda, sa, &be, c.as<T>(),
                           in, sc, ib),
                 __LINE__, batch == 1 ? "gemm" : "gemm_strided_batched", detail());
  });
}

void pairwise_sqdist(const View& a, const View& b, const View& out) {
  const long long batch = out.shape.rank == 3 ? out.shape[0] : 1;
  const long long n = rows_of(a), m = rows_of(b), d = cols_of(a);
  if (batch * n * m == 0) return;
  const long long a_step = batch_of(a) == 1 ? 0 : n * d;
  const long long b_step = batch_of(b) == 1 ? 0 : m * d;
  with_float_type(out.dtype, "pairwise_sqdist", [&](auto tag) {
    using T = decltype(tag);
    pairwise_sqdist_kernel<T><<<blocks_for(batch * n * m), block_threads, 0, current_stream()>>>(
        a.as<T>(), b.as<T>(), out.as<T>(), batch, n, m, d, a_step, b_step);
  });
  METATAPE_CUDA_LAUNCH_CHECK("pairwise_sqdist", &a, &b, &out);
}

}  // namespace metatape::kernels::cuda
