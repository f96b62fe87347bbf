// fill, copy (host<->device, device<->device) and convert on CUDA.
//
// Host copies of up to 256 KiB go through per-thread pinned staging slots:
// - host -> device: copies the host data into a free slot, then queues the DMA; the call returns
//   without waiting for the device (the host buffer may be freed at once).
// - device -> host: queues the DMA into a slot, synchronises the stream (the host needs the values),
//   copies out, then reports device-side errors (kernels/cuda/runtime.h).
// Larger copies use cudaMemcpyAsync on the pageable memory directly (host -> device returns once the
// source has been read; device -> host synchronises the stream).
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

template <class T>
__global__ void fill_kernel(T* out, long long n, T value) {
  METATAPE_GRID_LOOP(i, n) out[i] = value;
}

template <class S, class D>
__global__ void convert_kernel(const S* in, D* out, long long n) {
  METATAPE_GRID_LOOP(i, n) out[i] = static_cast<D>(in[i]);
}

__global__ void noop_kernel() {}

// Per-thread pinned staging: a ring of slots, each with an event recorded after the last DMA that
// read or wrote it. A slot is reused only once its event has completed, so back-to-back small
// host -> device copies do not wait for each other. Like the thread's stream it lives until the
// process ends.
constexpr int staging_slots = 8;
constexpr std::size_t staging_bytes = std::size_t{256} << 10;  // per slot

struct Staging {
  void* buffer[staging_slots] = {};
  cudaEvent_t done[staging_slots] = {};
  bool pending[staging_slots] = {};
  int next = 0;
};
thread_local Staging staging;

// The next slot, waited for (only blocks when that slot's DMA, 8 copies ago, is still running).
int staging_slot() {
  Staging& s = staging;
  const int k = s.next;
  s.next = (s.next + 1) % staging_slots;
  if (s.buffer[k] == nullptr) {
    METATAPE_CUDA_CHECK(cudaHostAlloc(&s.buffer[k], staging_bytes, cudaHostAllocPortable), "copy",
                        "pinned staging slot of " + std::to_string(staging_bytes) + " bytes");
    METATAPE_CUDA_CHECK(cudaEventCreateWithFlags(&s.done[k], cudaEventDisableTiming), "copy", "staging event");
  }
  if (s.pending[k]) {
    METATAPE_CUDA_CHECK(cudaEventSynchronize(s.done[k]), "copy", "waiting for a staging slot");
    s.pending[k] = false;
  }
  return k;
}

template <class S>
void convert_from(const View& src, const View& dst, cudaStream_t stream) {
  const long long n = src.numel();
  const S* in = src.as<S>();
  switch (dst.dtype) {
    case DType::f32:
      convert_kernel<<<blocks_for(n), block_threads, 0, stream>>>(in, dst.as<float>(), n);
      break;
    case DType::f64:
      convert_kernel<<<blocks_for(n), block_threads, 0, stream>>>(in, dst.as<double>(), n);
      break;
    case DType::i64:
      convert_kernel<<<blocks_for(n), block_threads, 0, stream>>>(in, dst.as<std::int64_t>(), n);
      break;
  }
}

}  // namespace

void fill(const View& out, double value) {
  const long long n = out.numel();
  if (n == 0) return;
  const cudaStream_t stream = current_stream();
  switch (out.dtype) {
    case DType::f32:
      fill_kernel<<<blocks_for(n), block_threads, 0, stream>>>(out.as<float>(), n, static_cast<float>(value));
      break;
    case DType::f64:
      fill_kernel<<<blocks_for(n), block_threads, 0, stream>>>(out.as<double>(), n, value);
      break;
    case DType::i64:
      fill_kernel<<<blocks_for(n), block_threads, 0, stream>>>(out.as<std::int64_t>(), n,
                                                               static_cast<std::int64_t>(value));
      break;
  }
  METATAPE_CUDA_LAUNCH_CHECK("fill", &out);
}

void copy(const View& src, const View& dst) {
  const std::size_t bytes = static_cast<std::size_t>(src.numel()) * dtype_size(src.dtype);
  if (bytes == 0) return;
  const cudaStream_t stream = current_stream();
  auto detail = [&] {
    return std::string(device_name(src.device)) + " " + src.shape.str() + " -> " + device_name(dst.device) + " " +
           dst.shape.str() + " " + dtype_name(src.dtype);
  };
  if (src.device == Device::cuda && dst.device == Device::cuda) {
    METATAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice, stream), "copy", detail());
    return;
  }
  if (dst.device == Device::cuda) {  // host -> device
    if (bytes <= staging_bytes) {
      const int k = staging_slot();
      std::memcpy(staging.buffer[k], src.data, bytes);
      METATAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, staging.buffer[k], bytes, cudaMemcpyHostToDevice, stream), "copy",
                          detail());
      METATAPE_CUDA_CHECK(cudaEventRecord(staging.done[k], stream), "copy", detail());
      staging.pending[k] = true;
    } else {
      METATAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyHostToDevice, stream), "copy", detail());
    }
    return;
  }
  // device -> host
  if (bytes <= staging_bytes) {
    const int k = staging_slot();
    METATAPE_CUDA_CHECK(cudaMemcpyAsync(staging.buffer[k], src.data, bytes, cudaMemcpyDeviceToHost, stream), "copy",
                        detail());
    queue_device_error_fetch(stream);
    METATAPE_CUDA_CHECK(cudaStreamSynchronize(stream), "copy", detail());
    std::memcpy(dst.data, staging.buffer[k], bytes);
  } else {
    METATAPE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToHost, stream), "copy", detail());
    queue_device_error_fetch(stream);
    METATAPE_CUDA_CHECK(cudaStreamSynchronize(stream), "copy", detail());
  }
  check_device_errors();
}

void convert(const View& src, const View& dst) {
  if (src.numel() == 0) return;
  const cudaStream_t stream = current_stream();
  switch (src.dtype) {
    case DType::f32:
      convert_from<float>(src, dst, stream);
      break;
    case DType::f64:
      convert_from<double>(src, dst, stream);
      break;
    case DType::i64:
      convert_from<std::int64_t>(src, dst, stream);
      break;
  }
  METATAPE_CUDA_LAUNCH_CHECK("convert", &src, &dst);
}

void launch_noop(cudaStream_t stream, int count) {
  for (int i = 0; i < count; ++i) noop_kernel<<<1, 1, 0, stream>>>();
  METATAPE_CUDA_CHECK(cudaGetLastError(), "launch_noop", std::to_string(count) + " launches");
}

}  // namespace metatape::kernels::cuda
