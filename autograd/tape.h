// The tape: a per-thread, append-only list of nodes in creation order (already a topological order).
//
// - A node holds its op name, its inputs and its output (owning handles) and a backward function. Recording happens only when grad mode is on and some input requires grad.
// - Backward functions are written with differentiable ops: under create_graph their work is recorded
//   on this same tape and can be differentiated again (second order and beyond). Without it, grad mode
//   is off while they run and the same code runs plain kernels.
// - Threads: each thread records on its own tape. grad() keeps its scratch state in the walk, so many
//   threads may differentiate through the same leaves (one model's parameters) at once; backward()
//   writes leaves' grad() and must not race with itself on shared leaves.
// - Memory: a node that is the only holder of its output can never receive a gradient, so the tape
//   drops such nodes (amortised compaction, newest first so releases cascade). Scopes release everything recorded inside them deterministically.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "autograd/tensor.h"

namespace metatape {

struct Node;

// Computes the gradients of a node's inputs from the gradient of its output. `needs[i]` says whether
// input i's gradient is wanted; an entry may be left undefined when it is not. A backward function
// reads the tensors it needs from node.inputs and node.output and captures only constants (scalars,
// labels, masks): the tape decides a node is dead when nothing but the node holds its output.
using BackwardFn =
    std::function<std::vector<Tensor>(const Node& node, const Tensor& grad_output, const std::vector<bool>& needs)>;

struct Node {
  const char* op = nullptr;
  std::vector<Tensor> inputs;
  Tensor output;
  BackwardFn backward;
  std::uint64_t seq = 0;  // creation number, strictly increasing on a thread
  bool released = false;  // saved state freed by a grad() call without retain_graph
};

// ---- grad mode ------------------------------------------------------------------------------------
bool grad_enabled();
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

// ---- anomaly detection: every recorded op's output (and every gradient) is checked for NaN/Inf and
// the first offending op is named. Reads values back to the host: a debugging mode, not for speed.
bool anomaly_detection_enabled();
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true);
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

// ---- recording (for op authors) -------------------------------------------------------------------
// True when an op with these inputs must be recorded.
bool should_record(std::initializer_list<const Tensor*> inputs);
// Records `output` as made by `op` from `inputs`, marks it as requiring grad, and returns it. Call only
// when should_record() said so. Under anomaly detection, checks the output first.
Tensor record(const char* op, Tensor output, std::vector<Tensor> inputs, BackwardFn backward);
// Under anomaly detection only: throws naming `op` when `t` holds NaN or Inf.
void check_anomaly(const char* op, const Tensor& t, const char* what = "output");

// ---- differentiation ------------------------------------------------------------------------------
struct GradOptions {
  bool create_graph = false;         // record the backward pass so it can be differentiated again
  std::optional<bool> retain_graph;  // keep saved state for another pass; default: create_graph
  bool allow_unused = false;         // an input not reaching the outputs gets zeros, not an error
};

// d(sum_k <grad_outputs[k], outputs[k]>)/d(inputs[j]) for every j. grad_outputs may be empty when
// every output is a one-element tensor (each is then seeded with 1).
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const GradOptions& options = {}, const std::vector<Tensor>& grad_outputs = {});

// Accumulates into grad() of every leaf that requires grad and is reached from `output`.
void backward(const Tensor& output, const Tensor& grad_output = Tensor(), bool create_graph = false);

// ---- scopes and marks -----------------------------------------------------------------------------
// A mark remembers the tape position; release_since() drops every node recorded after it. Tensors made
// there stay valid as values, but a gradient can no longer flow through them (grad() says so).
struct TapeMark {
  std::uint64_t seq = 0;
};
TapeMark tape_mark();
void release_since(TapeMark mark);

// RAII: releases everything recorded between construction and destruction (or close()).
class TapeScope {
 public:
  TapeScope() : mark_(tape_mark()) {}
  ~TapeScope() { close(); }
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;
  void close();

 private:
  TapeMark mark_;
  bool open_ = true;
};

// Nodes alive on this thread's tape (after dropping dead ones when `compact` is set).
std::size_t tape_size(bool compact = false);

}  // namespace metatape
