// CUDA-graph capture guard and executable-graph cache (kernels/cuda/graph.h).
#include "kernels/cuda/graph.h"

#include "kernels/cuda/runtime.h"
#include "kernels/error.h"

namespace metatape::kernels::cuda {
namespace {

// Makes `waiter` wait for the work queued so far on `signal`, without a host synchronisation.
void order_after(cudaStream_t waiter, cudaStream_t signal) {
  cudaEvent_t event = nullptr;
  METATAPE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "graph", "event");
  METATAPE_CUDA_CHECK(cudaEventRecord(event, signal), "graph", "cudaEventRecord");
  METATAPE_CUDA_CHECK(cudaStreamWaitEvent(waiter, event, 0), "graph", "cudaStreamWaitEvent");
  METATAPE_CUDA_CHECK(cudaEventDestroy(event), "graph", "cudaEventDestroy");
}

std::string binding_key(const std::string& config, const std::vector<View>& bindings) {
  std::string key = config;
  for (const View& v : bindings) {
    key += '|';
    key += v.shape.str();
    key += dtype_name(v.dtype);
  }
  return key;
}

}  // namespace

bool is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  METATAPE_CUDA_CHECK(cudaStreamIsCapturing(stream, &status), "graph", "cudaStreamIsCapturing");
  return status != cudaStreamCaptureStatusNone;
}

GraphCapture::GraphCapture(cudaStream_t stream) : stream_(stream) {
  METATAPE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "graph capture",
                      "cudaStreamBeginCapture (the stream must not be capturing already)");
}

GraphCapture::~GraphCapture() {
  if (!open_) return;
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr) {
    cudaGraphDestroy(graph);
  }
  cudaGetLastError();  // an invalidated capture leaves a sticky-free error behind; clear it
}

cudaGraph_t GraphCapture::end() {
  open_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t status = cudaStreamEndCapture(stream_, &graph);
  if (status == cudaErrorStreamCaptureInvalidated || status == cudaErrorStreamCaptureUnsupported ||
      status == cudaErrorStreamCaptureUnjoined) {
    cudaGetLastError();
    fail(std::string("graph capture: the captured code did something a CUDA graph cannot hold (") +
         cudaGetErrorName(status) +
         "): a host synchronisation (item(), to(cpu), synchronize(), metrics on) or work on another "
         "stream; keep the captured step free of host reads");
  }
  METATAPE_CUDA_CHECK(status, "graph capture", "cudaStreamEndCapture");
  return graph;
}

GraphCache::~GraphCache() {
  try {
    clear();
  } catch (...) {
    // Destructors do not throw; the CUDA context may already be gone at process exit.
  }
}

void GraphCache::clear() {
  if (entries_.empty()) return;
  cudaDeviceSynchronize();
  for (auto& [key, entry] : entries_) {
    if (entry->exec) cudaGraphExecDestroy(entry->exec);
    if (entry->stream) cudaStreamDestroy(entry->stream);
  }
  entries_.clear();
}

cudaGraph_t GraphCache::capture(Entry& entry, const std::function<void()>& body) {
  StreamGuard on_private(entry.stream);
  GraphCapture guard(entry.stream);
  body();
  cudaGraph_t graph = guard.end();
  ++stats_.captures;
  std::size_t nodes = 0;
  if (cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess) stats_.last_nodes = nodes;
  return graph;
}

void GraphCache::run(const std::string& config, const std::vector<View>& bindings, const std::function<void()>& body) {
  for (const View& v : bindings) {
    if (v.device != Device::cuda) {
      fail("graph: binding " + v.shape.str() +
           " is on the CPU; a CUDA graph only binds device "
           "buffers (copy host data into a device tensor outside the graph)");
    }
  }
  const cudaStream_t caller = current_stream();
  if (is_capturing(caller)) fail("graph: GraphCache::run called inside another capture");
  std::vector<void*> pointers;
  for (const View& v : bindings) pointers.push_back(v.data);
  const std::string key = binding_key(config, bindings);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    auto entry = std::make_unique<Entry>();
    METATAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&entry->stream, cudaStreamNonBlocking), "graph",
                        "cudaStreamCreateWithFlags");
    Entry& e = *entry;
    // Own the stream from here on, so an exception below still destroys it.
    it = entries_.emplace(key, std::move(entry)).first;
    try {
      order_after(e.stream, caller);
      {
        StreamGuard on_private(e.stream);
        body();  // warm-up, eager
      }
      order_after(caller, e.stream);
      cudaGraph_t graph = capture(e, body);
      const cudaError_t status = cudaGraphInstantiate(&e.exec, graph, 0);
      cudaGraphDestroy(graph);
      METATAPE_CUDA_CHECK(status, "graph", "cudaGraphInstantiate");
      ++stats_.instantiations;
      e.pointers = pointers;
    } catch (...) {
      cudaStreamSynchronize(e.stream);
      if (e.exec) cudaGraphExecDestroy(e.exec);
      cudaStreamDestroy(e.stream);
      entries_.erase(it);
      throw;
    }
  } else if (it->second->pointers != pointers) {
    Entry& e = *it->second;
    cudaGraph_t graph = capture(e, body);
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(e.exec, graph, &info) == cudaSuccess) {
      ++stats_.updates;
    } else {
      cudaGetLastError();
      cudaGraphExec_t fresh = nullptr;
      const cudaError_t status = cudaGraphInstantiate(&fresh, graph, 0);
      if (status != cudaSuccess) cudaGraphDestroy(graph);
      METATAPE_CUDA_CHECK(status, "graph", "cudaGraphInstantiate (after a refused update)");
      // The old executable may still run on the caller's stream; destroying it is deferred by the
      // driver until that launch completes.
      cudaGraphExecDestroy(e.exec);
      e.exec = fresh;
      ++stats_.instantiations;
    }
    cudaGraphDestroy(graph);
    e.pointers = pointers;
  } else {
    ++stats_.replays;
  }
  METATAPE_CUDA_CHECK(cudaGraphLaunch(it->second->exec, caller), "graph", "cudaGraphLaunch");
  ++stats_.launches;
}

}  // namespace metatape::kernels::cuda
