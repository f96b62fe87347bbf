// CUDA graphs for fixed-shape work (a whole meta-step, an adapt call): a scoped capture guard and a
// cache of executable graphs.
//
// GraphCache::run(config, bindings, body):
// - key = config + the shapes and dtypes of `bindings`. Bindings are every buffer the body reads or
//   writes that it did not allocate itself (inputs, parameters, outputs). Scalars the body passes
//   to kernels by value (learning rates, step counts) are frozen at capture: put them in `config`.
// - First run of a key: the body runs once eagerly on the entry's private stream (warm-up: cuBLAS
//   workspace, allocator size classes, so nothing calls cudaMalloc while capturing), is captured
//   on that stream, instantiated, and launched on the caller's current stream.
// - Later runs with the same binding pointers: the executable graph is replayed (the body is not
//   run at all: no host work beyond one cudaGraphLaunch).
// - Later runs whose binding pointers changed: the body is captured again and the executable graph
//   updated in place (cudaGraphExecUpdate); only when the update is refused (the topology
//   changed) is it re-instantiated.
// Memory: the body's own allocations belong to the entry's private stream (the allocator hands a
// block out again only to its stream), so they stay reserved for the graph's replays; nothing else
// runs on that stream. CachingAllocator::release_cache() would free them: do not call it while a
// cache holds graphs. No host synchronisation inside; a body that synchronises (item(), to(cpu),
// synchronize()) fails the capture with an error saying so.
// Not thread-safe: one cache per host thread.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/view.h"

namespace metatape::kernels::cuda {

// Begins capturing `stream` (relaxed mode) on construction; end() returns the captured graph (the
// caller destroys it). Destroying the guard without end() (an exception in the captured code)
// ends the capture and discards the graph.
class GraphCapture {
 public:
  explicit GraphCapture(cudaStream_t stream);
  ~GraphCapture();
  GraphCapture(const GraphCapture&) = delete;
  GraphCapture& operator=(const GraphCapture&) = delete;
  cudaGraph_t end();

 private:
  cudaStream_t stream_;
  bool open_ = true;
};

// True while `stream` is being captured.
bool is_capturing(cudaStream_t stream);

struct GraphStats {
  std::uint64_t captures = 0;        // bodies captured
  std::uint64_t instantiations = 0;  // cudaGraphInstantiate calls
  std::uint64_t updates = 0;         // successful in-place cudaGraphExecUpdate calls
  std::uint64_t replays = 0;         // launches without running the body
  std::uint64_t launches = 0;        // every cudaGraphLaunch
  std::size_t last_nodes = 0;        // nodes (kernels, copies, memsets) of the last captured graph
};

class GraphCache {
 public:
  GraphCache() = default;
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  void run(const std::string& config, const std::vector<View>& bindings, const std::function<void()>& body);
  // Destroys every executable graph and private stream (waits for the device first).
  void clear();
  std::size_t size() const { return entries_.size(); }
  const GraphStats& stats() const { return stats_; }

 private:
  struct Entry {
    cudaStream_t stream = nullptr;
    cudaGraphExec_t exec = nullptr;
    std::vector<void*> pointers;
  };
  cudaGraph_t capture(Entry& entry, const std::function<void()>& body);
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
  GraphStats stats_;
};

}  // namespace metatape::kernels::cuda
