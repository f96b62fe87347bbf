// The NCCL all-gather of CUDA rows (dist/mpi_backend.h), built with METATAPE_WITH_NCCL.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "dist/mpi_backend.h"
#include "kernels/cuda/runtime.h"
#include "kernels/error.h"

namespace metatape::dist {
namespace {

void check(ncclResult_t code, const char* call) {
  if (code != ncclSuccess) fail(std::string("NCCL: ") + call + " failed: " + ncclGetErrorString(code));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    default:
      fail("NCCL row gather: rows must be f32 or f64, got " + std::string(kernels::dtype_name(dtype)));
  }
}

}  // namespace

void select_rank_device(int local_rank) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();  // no GPU: the CPU backend runs; nothing to bind
    return;
  }
  if (cudaSetDevice(local_rank % devices) != cudaSuccess) {
    fail("NCCL: cannot select GPU " + std::to_string(local_rank % devices) + " for local rank " +
         std::to_string(local_rank));
  }
}

NcclRows::NcclRows(int rank, int size, Broadcast broadcast_id) : rank_(rank), size_(size), broadcast_id_(broadcast_id) {}

NcclRows::~NcclRows() {
  if (comm_ != nullptr) (void)ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

Tensor NcclRows::all_gather(const Tensor& local, std::int64_t n) const {
  if (comm_ == nullptr) {
    ncclUniqueId id{};
    if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    broadcast_id_(&id, sizeof id);
    ncclComm_t comm = nullptr;
    check(ncclCommInitRank(&comm, size_, id, rank_), "ncclCommInitRank");
    comm_ = comm;
  }
  NoGradGuard no_grad;
  const std::int64_t width = local.dim(1);
  // ncclAllGather moves equal blocks: every share is padded to the largest (shares differ by one row
  // at most), gathered, and the padding rows are cut out again on the device.
  const std::int64_t block = (n + size_ - 1) / size_;
  Tensor send = local;
  if (local.dim(0) < block) {
    send = concat({local, Tensor::zeros(Shape{block - local.dim(0), width}, local.dtype(), Device::cuda)}, 0);
  }
  Tensor gathered = Tensor::empty(Shape{block * size_, width}, local.dtype(), Device::cuda);
  check(ncclAllGather(send.raw_data(), gathered.raw_data(), static_cast<std::size_t>(block * width),
                      nccl_type(local.dtype()), static_cast<ncclComm_t>(comm_), kernels::cuda::current_stream()),
        "ncclAllGather");
  if (block * size_ == n) return gathered;
  std::vector<Tensor> parts;
  for (int r = 0; r < size_; ++r) {
    const Share s = share_of(n, r, size_);
    if (s.size() > 0) parts.push_back(slice(gathered, 0, r * block, r * block + s.size()));
  }
  return concat(parts, 0);
}

}  // namespace metatape::dist
