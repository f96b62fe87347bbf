// 2-D convolution on CUDA through cuDNN's convolution API (cudnnConvolutionForward, BackwardData,
// BackwardFilter). Contract: kernels/op_list.inc.
//
// - One cuDNN handle per host thread, bound to the thread's current stream (kernels/cuda/runtime.h)
//   on every call, so work is ordered with the rest of the backend and can be graph-captured.
// - Workspace comes from the caching, stream-ordered allocator and is returned right after the call
//   is queued (the block is reused only by later work on the same stream).
// - Algorithms: cuDNN's heuristic list (the *_v7 queries, no benchmarking runs), the first entry that
//   succeeds and is CUDNN_DETERMINISTIC, so the same inputs give the same bits run to run (backward
//   filter's atomic-add algorithms are skipped). Chosen once per (op, shapes, geometry, dtype) per thread.
// - Math: CUDNN_FMA_MATH, plain FMA in the data type: no TF32 or tensor-core down-conversion, so f32
//   results agree with the CPU reference to rounding (tests/cuda/parity_test.cpp).
// - Every status is checked; a failure throws naming the op, the call and the shapes.
// This is cuDNN's legacy convolution API (deprecated in cuDNN 9 in favour of the graph API, still
// shipped in every 9.x); it needs no JSON engine configs and runs on the GPU machine's cuDNN 9.14.
#include <cudnn.h>

#include <climits>
#include <map>
#include <string>

#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/error.h"

namespace metatape::kernels::cuda {
namespace {

std::string shapes(const char* op, const View& a, const View& b, const View& c) {
  return std::string(op) + " " + a.shape.str() + ", " + b.shape.str() + " -> " + c.shape.str() + " " +
         dtype_name(a.dtype);
}

void check(cudnnStatus_t status, const char* call, const std::string& detail) {
  if (status != CUDNN_STATUS_SUCCESS) {
    fail(std::string("conv2d: cuDNN error ") + cudnnGetErrorString(status) + " in " + call + " [" + detail + "]");
  }
}

int as_int(std::int64_t v, const std::string& detail) {
  if (v > INT_MAX) fail("conv2d: dimension " + std::to_string(v) + " is over cuDNN's int limit [" + detail + "]");
  return static_cast<int>(v);
}

cudnnHandle_t handle_for(cudaStream_t stream, const std::string& detail) {
  thread_local cudnnHandle_t handle = nullptr;
  if (handle == nullptr) check(cudnnCreate(&handle), "cudnnCreate", detail);
  check(cudnnSetStream(handle, stream), "cudnnSetStream", detail);
  return handle;
}

// The descriptors of one call: x (N, C, H, W), w (O, C, kh, kw), y (N, O, out_h, out_w).
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  std::string detail;

  Descriptors(const View& xv, const View& wv, const View& yv, const WindowGeometry& g, const std::string& d) : detail(d) {
    const cudnnDataType_t type = xv.dtype == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    auto i = [&](std::int64_t v) { return as_int(v, detail); };
    check(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor", detail);
    check(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor", detail);
    check(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor", detail);
    check(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor", detail);
    check(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, type, i(xv.shape[0]), i(xv.shape[1]), i(xv.shape[2]),
                                     i(xv.shape[3])),
          "cudnnSetTensor4dDescriptor (input)", detail);
    check(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, type, i(yv.shape[0]), i(yv.shape[1]), i(yv.shape[2]),
                                     i(yv.shape[3])),
          "cudnnSetTensor4dDescriptor (output)", detail);
    check(cudnnSetFilter4dDescriptor(w, type, CUDNN_TENSOR_NCHW, i(wv.shape[0]), i(wv.shape[1]), i(wv.shape[2]),
                                     i(wv.shape[3])),
          "cudnnSetFilter4dDescriptor", detail);
    check(cudnnSetConvolution2dDescriptor(conv, i(g.ph), i(g.pw), i(g.sh), i(g.sw), i(g.dh), i(g.dw),
                                          CUDNN_CROSS_CORRELATION, type),
          "cudnnSetConvolution2dDescriptor", detail);
    check(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), "cudnnSetConvolutionMathType", detail);
  }
  ~Descriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
};

// The first deterministic, successful entry of a cuDNN heuristic list.
template <class Perf>
decltype(Perf::algo) pick(const Perf* perf, int count, const char* call, const std::string& detail) {
  for (int k = 0; k < count; ++k) {
    if (perf[k].status == CUDNN_STATUS_SUCCESS && perf[k].determinism == CUDNN_DETERMINISTIC) return perf[k].algo;
  }
  fail(std::string("conv2d: ") + call + " offered no deterministic algorithm [" + detail + "]");
}


std::string key_of(const View& x, const View& w, const WindowGeometry& g) {
  return x.shape.str() + w.shape.str() + dtype_name(x.dtype) + std::to_string(g.sh) + "," + std::to_string(g.sw) + "," +
         std::to_string(g.ph) + "," + std::to_string(g.pw) + "," + std::to_string(g.dh) + "," + std::to_string(g.dw);
}

// The algorithm this thread chose for `key` (shapes + geometry + dtype) among cuDNN's heuristic list of
// Perf entries; query(perf, count, &returned) fills the list the first time a key is seen.
template <class Perf, int Count, class Query>
decltype(Perf::algo) chosen_algorithm(const std::string& key, const char* call, const std::string& detail, Query query) {
  thread_local std::map<std::string, decltype(Perf::algo)> chosen;  // one map per Perf type, i.e. per op
  if (const auto it = chosen.find(key); it != chosen.end()) return it->second;
  Perf perf[Count];
  int returned = 0;
  check(query(perf, Count, &returned), call, detail);
  return chosen.emplace(key, pick(perf, returned, call, detail)).first->second;
}

// Runs `call(workspace, bytes)` with `bytes` of stream-ordered workspace.
template <class Call>
void with_workspace(std::size_t bytes, Call call) {
  CachingAllocator& a = CachingAllocator::instance();
  void* ws = bytes > 0 ? a.allocate(bytes) : nullptr;
  try {
    call(ws, bytes);
  } catch (...) {
    a.deallocate(ws);
    throw;
  }
  a.deallocate(ws);
}

// alpha = 1, beta = 0 in the type cuDNN expects for the data type.
struct Scalars {
  double d1 = 1.0, d0 = 0.0;
  float f1 = 1.0f, f0 = 0.0f;
  const void* one(DType t) const { return t == DType::f64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero(DType t) const { return t == DType::f64 ? static_cast<const void*>(&d0) : &f0; }
};

void check_float(const char* op, const View& v) {
  if (v.dtype != DType::f32 && v.dtype != DType::f64) fail(std::string(op) + ": needs f32 or f64, got " + dtype_name(v.dtype));
}

}  // namespace

void conv2d_forward(const View& x, const View& w, const WindowGeometry& g, const View& y) {
  check_float("conv2d", x);
  if (y.numel() == 0) return;
  const std::string detail = shapes("conv2d forward", x, w, y);
  const Descriptors d(x, w, y, g, detail);
  cudnnHandle_t h = handle_for(current_stream(), detail);
  const auto algo = chosen_algorithm<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
      key_of(x, w, g), "cudnnGetConvolutionForwardAlgorithm_v7", detail, [&](auto* perf, int n, int* returned) {
        return cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, n, returned, perf);
      });
  std::size_t bytes = 0;
  check(cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, algo, &bytes),
        "cudnnGetConvolutionForwardWorkspaceSize", detail);
  const Scalars s;
  with_workspace(bytes, [&](void* ws, std::size_t n) {
    check(cudnnConvolutionForward(h, s.one(x.dtype), d.x, x.data, d.w, w.data, d.conv, algo, ws, n,
                                  s.zero(x.dtype), d.y, y.data),
          "cudnnConvolutionForward", detail);
  });
}

void conv2d_backward_data(const View& dy, const View& w, const WindowGeometry& g, const View& dx) {
  check_float("conv2d_backward_data", dx);
  if (dx.numel() == 0) return;
  const std::string detail = shapes("conv2d backward data", dy, w, dx);
  const Descriptors d(dx, w, dy, g, detail);
  cudnnHandle_t h = handle_for(current_stream(), detail);
  const auto algo = chosen_algorithm<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
      key_of(dx, w, g), "cudnnGetConvolutionBackwardDataAlgorithm_v7", detail, [&](auto* perf, int n, int* returned) {
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, n, returned, perf);
      });
  std::size_t bytes = 0;
  check(cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, algo, &bytes),
        "cudnnGetConvolutionBackwardDataWorkspaceSize", detail);
  const Scalars s;
  with_workspace(bytes, [&](void* ws, std::size_t n) {
    check(cudnnConvolutionBackwardData(h, s.one(dx.dtype), d.w, w.data, d.y, dy.data, d.conv, algo, ws, n,
                                       s.zero(dx.dtype), d.x, dx.data),
          "cudnnConvolutionBackwardData", detail);
  });
}

void conv2d_backward_filter(const View& x, const View& dy, const WindowGeometry& g, const View& dw) {
  check_float("conv2d_backward_filter", dw);
  if (dw.numel() == 0) return;
  if (x.numel() == 0) {  // an empty batch: the sum over no images
    fill(dw, 0.0);
    return;
  }
  const std::string detail = shapes("conv2d backward filter", x, dy, dw);
  const Descriptors d(x, dw, dy, g, detail);
  cudnnHandle_t h = handle_for(current_stream(), detail);
  const auto algo = chosen_algorithm<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
      key_of(x, dw, g), "cudnnGetConvolutionBackwardFilterAlgorithm_v7", detail, [&](auto* perf, int n, int* returned) {
        return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, n, returned, perf);
      });
  std::size_t bytes = 0;
  check(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, algo, &bytes),
        "cudnnGetConvolutionBackwardFilterWorkspaceSize", detail);
  const Scalars s;
  with_workspace(bytes, [&](void* ws, std::size_t n) {
    check(cudnnConvolutionBackwardFilter(h, s.one(x.dtype), d.x, x.data, d.y, dy.data, d.conv, algo, ws, n,
                                         s.zero(x.dtype), d.w, dw.data),
          "cudnnConvolutionBackwardFilter", detail);
  });
}

}  // namespace metatape::kernels::cuda
