// CUDA runtime plumbing shared by the CUDA backend: the per-thread current stream, checked calls, and
// the device-side error record that kernels use instead of throwing.
//
// Streams: each host thread has a current stream. Unless set, it is a non-blocking stream created
// lazily for that thread (never the legacy default stream, so work can be captured into a CUDA graph).
// StreamGuard switches it for a scope. Kernels, cuBLAS calls and allocations are ordered on it.
//
// Device-side errors (a label or an index out of range found inside a kernel): a kernel cannot throw
// without a host synchronisation, so it writes the first error into a record in device memory (first
// error wins, through atomicCAS) and produces NaN (float outputs) for the affected row. Every host
// synchronisation of this library (copy() to the host: item(), to_vector(), to(Device::cpu); and
// synchronize()) queues a copy of the record into a pinned per-thread mirror just before it waits,
// then throws an Error naming the op and the value if the record is set (and clears it). No extra
// synchronisation is added; the record is process-wide.
//
// Only device 0 (the current device) is used.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace metatape::kernels::cuda {

cudaStream_t current_stream();
void set_current_stream(cudaStream_t stream);

class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t stream) : previous_(current_stream()) { set_current_stream(stream); }
  ~StreamGuard() { set_current_stream(previous_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t previous_;
};

// Waits for the current stream, then throws if a kernel recorded a device-side error.
void synchronize();
// Queues the copy of the device error record into this thread's mirror on `stream`; call it right
// before synchronising `stream`, then check_device_errors().
void queue_device_error_fetch(cudaStream_t stream);
// Throws (and clears the record) if the mirror fetched by the last synchronisation shows an error.
void check_device_errors();

enum class DeviceErrorCode : int { none = 0, label_out_of_range = 1, index_out_of_range = 2 };

// Written by kernels (first error wins: atomicCAS on code, -1 while the fields are written).
struct DeviceErrorRecord {
  int code;  // DeviceErrorCode
  int op;    // DeviceErrorOp
  long long value;
  long long position;
  long long bound;
};
enum class DeviceErrorOp : int { cross_entropy = 0, one_hot = 1, index_select = 2, index_add = 3 };

// The record in device memory, allocated (zeroed) on first use.
DeviceErrorRecord* device_error_record();

// Throws metatape::Error "metatape: <op>: CUDA error <name> (<text>) at <file>:<line> [<detail>]".
[[noreturn]] void throw_cuda_error(cudaError_t error, const char* file, int line, const char* op,
                                   const std::string& detail);

// The launch floor probe for bench/: launches `count` empty kernels on `stream`.
void launch_noop(cudaStream_t stream, int count);

}  // namespace metatape::kernels::cuda

// Checks a CUDA runtime call; `detail` (op shapes) is only built on failure.
#define METATAPE_CUDA_CHECK(call, op, detail)                                                                 \
  do {                                                                                                        \
    const cudaError_t metatape_cuda_status_ = (call);                                                         \
    if (metatape_cuda_status_ != cudaSuccess) {                                                               \
      ::metatape::kernels::cuda::throw_cuda_error(metatape_cuda_status_, __FILE__, __LINE__, (op), (detail)); \
    }                                                                                                         \
  } while (0)
