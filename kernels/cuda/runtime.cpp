#include "kernels/cuda/runtime.h"

#include <mutex>
#include <string>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/error.h"

namespace metatape::kernels::cuda {
namespace {

// Streams created for threads live as long as the process: blocks cached for them by the allocator
// stay valid, and nothing is destroyed after the CUDA runtime has shut down.
struct ThreadStream {
  cudaStream_t stream = nullptr;
  bool set = false;
};
thread_local ThreadStream thread_stream;

std::once_flag record_once;
DeviceErrorRecord* record_device = nullptr;
// Pinned, per thread; filled by queue_device_error_fetch and read after the synchronisation.
thread_local DeviceErrorRecord* record_mirror = nullptr;

const char* op_name(int op) {
  switch (static_cast<DeviceErrorOp>(op)) {
    case DeviceErrorOp::cross_entropy:
      return "cross_entropy";
    case DeviceErrorOp::one_hot:
      return "one_hot";
    case DeviceErrorOp::index_select:
      return "index_select";
    case DeviceErrorOp::index_add:
      return "index_add";
  }
  return "kernel";
}

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clears the sticky "no device / no driver" status
      return 0;
    }
    return n;
  }();
  return count;
}

cudaStream_t current_stream() {
  if (!thread_stream.set) {
    if (device_count() == 0) {
      fail(
          "cuda: a CUDA tensor was used but no CUDA device is present (check nvidia-smi, or keep "
          "tensors on Device::cpu)");
    }
    METATAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&thread_stream.stream, cudaStreamNonBlocking), "stream",
                        "creating the thread's stream");
    thread_stream.set = true;
  }
  return thread_stream.stream;
}

void set_current_stream(cudaStream_t stream) {
  thread_stream.stream = stream;
  thread_stream.set = true;
}

void synchronize() {
  const cudaStream_t stream = current_stream();
  queue_device_error_fetch(stream);
  METATAPE_CUDA_CHECK(cudaStreamSynchronize(stream), "synchronize", "current stream");
  check_device_errors();
}

DeviceErrorRecord* device_error_record() {
  std::call_once(record_once, [] {
    void* ptr = nullptr;
    METATAPE_CUDA_CHECK(cudaMalloc(&ptr, sizeof(DeviceErrorRecord)), "device error record", "allocation");
    METATAPE_CUDA_CHECK(cudaMemset(ptr, 0, sizeof(DeviceErrorRecord)), "device error record", "zero");
    // Our streams do not synchronise with the legacy stream the memset ran on: wait once here.
    METATAPE_CUDA_CHECK(cudaDeviceSynchronize(), "device error record", "zero");
    record_device = static_cast<DeviceErrorRecord*>(ptr);
  });
  return record_device;
}

void queue_device_error_fetch(cudaStream_t stream) {
  if (record_device == nullptr) return;  // no kernel that reports errors has run yet
  if (record_mirror == nullptr) {
    void* ptr = nullptr;
    METATAPE_CUDA_CHECK(cudaHostAlloc(&ptr, sizeof(DeviceErrorRecord), cudaHostAllocPortable), "device error record",
                        "pinned mirror");
    record_mirror = static_cast<DeviceErrorRecord*>(ptr);
  }
  *record_mirror = DeviceErrorRecord{0, 0, 0, 0, 0};
  METATAPE_CUDA_CHECK(
      cudaMemcpyAsync(record_mirror, record_device, sizeof(DeviceErrorRecord), cudaMemcpyDeviceToHost, stream),
      "device error record", "fetch");
}

void check_device_errors() {
  if (record_mirror == nullptr || record_mirror->code <= 0) return;
  const DeviceErrorRecord e = *record_mirror;
  *record_mirror = DeviceErrorRecord{0, 0, 0, 0, 0};
  METATAPE_CUDA_CHECK(cudaMemset(record_device, 0, sizeof(DeviceErrorRecord)), "device error record", "clear");
  METATAPE_CUDA_CHECK(cudaDeviceSynchronize(), "device error record", "clear");
  const std::string op = op_name(e.op);
  const std::string range = " is outside [0, " + std::to_string(e.bound) + ")";
  const std::string where = " (found by a CUDA kernel, reported at the next synchronisation)";
  if (static_cast<DeviceErrorCode>(e.code) == DeviceErrorCode::label_out_of_range) {
    fail(op + ": label " + std::to_string(e.value) + " in row " + std::to_string(e.position) + range +
         " (check the number of classes)" + where);
  }
  fail(op + ": index " + std::to_string(e.value) + " at position " + std::to_string(e.position) + range + where);
}

void throw_cuda_error(cudaError_t error, const char* file, int line, const char* op, const std::string& detail) {
  cudaGetLastError();  // a non-sticky error must not resurface at the next unrelated check
  fail(std::string(op) + ": CUDA error " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ") at " + file +
       ":" + std::to_string(line) + (detail.empty() ? "" : " [" + detail + "]"));
}

}  // namespace metatape::kernels::cuda
