#include "autograd/tape.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "autograd/ops.h"
#include "kernels/kernels.h"

namespace metatape {
namespace {

struct Tape {
  std::vector<std::shared_ptr<Node>> nodes;  // sorted by seq
  std::uint64_t next_seq = 1;
  std::size_t compact_at = 4096;
  int walking = 0;  // grad() in progress: no compaction, indices must stay put
};

thread_local Tape tape;
thread_local bool grad_mode = true;
thread_local bool anomaly_mode = false;

void compact() {
  if (tape.walking > 0) return;
  auto& nodes = tape.nodes;
  for (std::size_t i = nodes.size(); i-- > 0;) {
    if (nodes[i]->output.impl_ptr().use_count() == 1) nodes[i].reset();
  }
  nodes.erase(std::remove(nodes.begin(), nodes.end(), nullptr), nodes.end());
  tape.compact_at = std::max<std::size_t>(4096, 2 * nodes.size());
}

// Index of the node with this seq in tape.nodes, or -1.
std::ptrdiff_t index_of(const Node* node) {
  auto it = std::lower_bound(tape.nodes.begin(), tape.nodes.end(), node->seq,
                             [](const std::shared_ptr<Node>& n, std::uint64_t s) { return n->seq < s; });
  if (it == tape.nodes.end() || it->get() != node) return -1;
  return it - tape.nodes.begin();
}

std::string label(const TensorImpl& t) {
  return t.name.empty() ? std::string("an unnamed tensor ") + t.shape.str() : "'" + t.name + "' " + t.shape.str();
}

// One backward walk; shared by grad() and backward(). Its scratch state (pending gradients, which
// tensors were requested or reach a requested one) lives in the walk, not in the tensors, so threads
// may differentiate through shared leaves (e.g. one model's parameters) at the same time.
class Walk {
 public:
  Walk(bool requested_only, bool create_graph, bool retain_graph)
      : requested_only_(requested_only), create_(create_graph), retain_(retain_graph) {
    slots_.reserve(64);
    ++tape.walking;
  }
  ~Walk() { --tape.walking; }
  Walk(const Walk&) = delete;
  Walk& operator=(const Walk&) = delete;

  void request(const Tensor& input, std::size_t position) {
    const TensorImpl* t = input.impl();
    if (!t->requires_grad) {
      fail("grad: input #" + std::to_string(position) + " (" + label(*t) +
           ") does not require grad; call requires_grad_() on it before the forward pass");
    }
    Slot& s = slots_[t];
    s.requested = true;
    s.reaches = true;
  }

  void seed(const Tensor& output, const Tensor& grad_output, std::size_t position) {
    const TensorImpl* t = output.impl();
    if (!t->requires_grad) {
      fail("grad: output #" + std::to_string(position) + " (" + label(*t) +
           ") does not require grad: nothing that requires grad was recorded into it "
           "(was grad mode off, or were the inputs detached?)");
    }
    Tensor g = grad_output;
    if (!g.defined()) {
      if (output.numel() != 1) {
        fail("grad: output #" + std::to_string(position) + " (" + label(*t) +
             ") has more than one element; pass grad_outputs for it");
      }
      g = Tensor::ones(output.shape(), output.dtype(), output.device());
    } else if (g.shape() != output.shape() || g.dtype() != output.dtype()) {
      fail("grad: grad_output " + describe(g) + " does not match output " + describe(output));
    }
    if (const auto node = t->producer.lock()) {
      start_ = std::max(start_, index_of(node.get()));
    }
    accumulate(t, g);
  }

  void run() {
    if (requested_only_) mark_reach();
    std::vector<bool> needs;
    for (std::ptrdiff_t i = start_; i >= 0 && outstanding_ > 0; --i) {
      const std::shared_ptr<Node> node = tape.nodes[static_cast<std::size_t>(i)];
      const TensorImpl* out = node->output.impl();
      Slot* out_slot = out ? find(out) : nullptr;
      if (!out_slot || !out_slot->pending) continue;
      --outstanding_;
      if (node->released) throw_freed(*node);
      needs.assign(node->inputs.size(), false);
      bool any = false;
      for (std::size_t j = 0; j < node->inputs.size(); ++j) {
        const TensorImpl* in = node->inputs[j].impl();
        if (!in->requires_grad) continue;
        if (requested_only_) {
          const Slot* in_slot = find(in);
          needs[j] = in_slot != nullptr && in_slot->reaches;
        } else {
          needs[j] = true;
        }
        any = any || needs[j];
      }
      if (any) {
        const Tensor g(out_slot->pending);
        std::vector<Tensor> grads;
        {
          GradModeGuard mode(create_);
          grads = node->backward(*node, g, needs);
        }
        for (std::size_t j = 0; j < node->inputs.size(); ++j) {
          if (!needs[j] || j >= grads.size() || !grads[j].defined()) continue;
          const Tensor& in = node->inputs[j];
          if (grads[j].shape() != in.shape()) {
            fail(std::string("internal: backward of '") + node->op + "' returned a gradient of shape " +
                 grads[j].shape().str() + " for an input of shape " + in.shape().str());
          }
          if (anomaly_mode) check_anomaly(node->op, grads[j], "gradient (backward)");
          accumulate(in.impl(), grads[j]);
        }
        // accumulate() may have rehashed: look the output's slot up again.
        out_slot = find(out);
      }
      if (!out_slot->requested) out_slot->pending.reset();
      // Only a node whose backward ran gives up its saved state: one that merely produced a requested
      // tensor (nothing upstream wanted) stays intact for later passes.
      if (any && !retain_) {
        node->released = true;
        node->inputs.clear();
        node->backward = nullptr;
      }
    }
  }

  // The accumulated gradient of `t`, or an undefined tensor.
  Tensor gradient_of(const TensorImpl* t) const {
    const auto it = slots_.find(t);
    return it == slots_.end() ? Tensor() : Tensor(it->second.pending);
  }

  // Leaves that received a gradient (for backward()), with it.
  std::vector<std::pair<TensorImpl*, Tensor>> reached_leaves() const {
    std::vector<std::pair<TensorImpl*, Tensor>> leaves;
    for (const auto& [t, slot] : slots_) {
      if (t->producer_op == nullptr && slot.pending) {
        leaves.emplace_back(const_cast<TensorImpl*>(t), Tensor(slot.pending));
      }
    }
    return leaves;
  }

 private:
  struct Slot {
    std::shared_ptr<TensorImpl> pending;
    bool requested = false;
    bool reaches = false;  // is, or was made from, a requested input
    bool owned = false;    // pending is a sum this walk allocated, referenced only here
  };

  Slot* find(const TensorImpl* t) {
    const auto it = slots_.find(t);
    return it == slots_.end() ? nullptr : &it->second;
  }

  void mark_reach() {
    for (std::ptrdiff_t i = 0; i <= start_; ++i) {
      const Node& node = *tape.nodes[static_cast<std::size_t>(i)];
      if (node.released || !node.output.defined()) continue;
      for (const Tensor& in : node.inputs) {
        const TensorImpl* t = in.impl();
        // A tensor whose producer was released may have led to a requested input: let the gradient
        // reach it so accumulate() reports the released scope instead of silently dropping the path.
        const bool cut = t->producer_op != nullptr && t->producer.expired() && t->requires_grad;
        if (cut) slots_[t].reaches = true;
        const Slot* s = cut ? nullptr : find(t);
        if (cut || (s != nullptr && s->reaches)) {
          slots_[node.output.impl()].reaches = true;
          break;
        }
      }
    }
  }

  void accumulate(const TensorImpl* t, const Tensor& g) {
    Slot& s = slots_[t];
    if (t->producer_op != nullptr && !s.requested) {
      const std::shared_ptr<Node> node = t->producer.lock();
      if (!node) {
        fail(std::string("grad: backward through a released scope: ") + label(*t) + " was made by '" + t->producer_op +
             "' inside a TapeScope (or before a release_since mark) that has been closed; keep the "
             "scope open until every grad() through it is done, or detach() the tensor");
      }
      if (node->released) throw_freed(*node);
    }
    if (!s.pending) {
      s.pending = g.impl_ptr();
      if (t->producer_op != nullptr && !t->producer.expired()) ++outstanding_;
    } else if (s.owned && g.shape() == s.pending->shape && g.dtype() == s.pending->dtype &&
               g.device() == s.pending->device) {
      // A sum this walk made and nobody else holds: add in place.
      const Tensor sum(s.pending);
      kernels::binary(kernels::BinaryOp::add, sum.view(), g.view(), sum.view());
    } else {
      std::shared_ptr<TensorImpl> sum = add(Tensor(s.pending), g).impl_ptr();
      // Without create_graph the sum is a plain buffer: later contributions go into it in place.
      // (The first contribution is never written to: a backward may hand the same tensor to several
      // inputs, or return its incoming gradient as is.) The slot's gradient is handed out only once
      // every contribution has arrived (creation order is topological), so no one sees it change.
      s.owned = !create_ && !sum->requires_grad && sum.use_count() == 1 && sum->offset == 0 &&
                sum->storage.use_count() == 1;
      s.pending = std::move(sum);
    }
  }

  [[noreturn]] static void throw_freed(const Node& node) {
    fail(std::string("grad: backward through '") + node.op +
         "' a second time, but its saved tensors were freed by the first grad()/backward(); pass "
         "retain_graph=true (or create_graph=true) to the first call");
  }

  bool requested_only_;
  bool create_;
  bool retain_;
  std::ptrdiff_t start_ = -1;
  std::ptrdiff_t outstanding_ = 0;
  std::unordered_map<const TensorImpl*, Slot> slots_;
};

}  // namespace

bool grad_enabled() { return grad_mode; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(grad_mode) { grad_mode = enabled; }
GradModeGuard::~GradModeGuard() { grad_mode = previous_; }

bool anomaly_detection_enabled() { return anomaly_mode; }
DetectAnomalyGuard::DetectAnomalyGuard(bool enabled) : previous_(anomaly_mode) { anomaly_mode = enabled; }
DetectAnomalyGuard::~DetectAnomalyGuard() { anomaly_mode = previous_; }

void check_anomaly(const char* op, const Tensor& t, const char* what) {
  if (!anomaly_mode || t.dtype() == DType::i64) return;
  const std::vector<double> values = t.to_vector<double>();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      fail(std::string("detect_anomaly: op '") + op + "' produced " + (std::isnan(values[i]) ? "NaN" : "Inf") +
           " in its " + what + " (" + describe(t) + ", first at flat index " + std::to_string(i) + ")");
    }
  }
}

bool should_record(std::initializer_list<const Tensor*> inputs) {
  if (!grad_mode) return false;
  for (const Tensor* t : inputs) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

Tensor record(const char* op, Tensor output, std::vector<Tensor> inputs, BackwardFn backward) {
  check_anomaly(op, output);
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->output = output;
  node->backward = std::move(backward);
  node->seq = tape.next_seq++;
  TensorImpl* t = output.impl();
  t->requires_grad = true;
  t->producer = node;
  t->producer_op = op;
  tape.nodes.push_back(std::move(node));
  if (tape.nodes.size() >= tape.compact_at) compact();
  return output;
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const GradOptions& options, const std::vector<Tensor>& grad_outputs) {
  if (outputs.empty()) fail("grad: no outputs given");
  if (!grad_outputs.empty() && grad_outputs.size() != outputs.size()) {
    fail("grad: " + std::to_string(grad_outputs.size()) + " grad_outputs for " + std::to_string(outputs.size()) +
         " outputs");
  }
  Walk walk(true, options.create_graph, options.retain_graph.value_or(options.create_graph));
  for (std::size_t j = 0; j < inputs.size(); ++j) walk.request(inputs[j], j);
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    walk.seed(outputs[k], grad_outputs.empty() ? Tensor() : grad_outputs[k], k);
  }
  walk.run();
  std::vector<Tensor> result;
  result.reserve(inputs.size());
  for (std::size_t j = 0; j < inputs.size(); ++j) {
    const TensorImpl* t = inputs[j].impl();
    if (Tensor g = walk.gradient_of(t); g.defined()) {
      result.push_back(g);
    } else if (options.allow_unused) {
      result.push_back(Tensor::zeros(t->shape, t->dtype, t->device));
    } else {
      fail("grad: input #" + std::to_string(j) + " (" + label(*t) +
           ") does not reach the outputs; pass allow_unused=true if that is expected");
    }
  }
  return result;
}

void backward(const Tensor& output, const Tensor& grad_output, bool create_graph) {
  Walk walk(false, create_graph, create_graph);
  walk.seed(output, grad_output, 0);
  walk.run();
  GradModeGuard mode(create_graph);
  for (auto& [leaf, g] : walk.reached_leaves()) {
    if (!leaf->requires_grad) continue;
    if (!leaf->grad) {
      leaf->grad = (create_graph ? g : g.copy()).impl_ptr();
    } else {
      leaf->grad = add(Tensor(leaf->grad), create_graph ? g : g.detach()).impl_ptr();
    }
  }
}

TapeMark tape_mark() { return TapeMark{tape.next_seq}; }

void release_since(TapeMark mark) {
  if (tape.walking > 0) fail("release_since: called while grad() is running");
  auto& nodes = tape.nodes;
  auto it = std::lower_bound(nodes.begin(), nodes.end(), mark.seq,
                             [](const std::shared_ptr<Node>& n, std::uint64_t s) { return n->seq < s; });
  // Newest first, so each release can cascade into older nodes of the scope.
  while (nodes.end() != it) nodes.pop_back();
}

void TapeScope::close() {
  if (!open_) return;
  open_ = false;
  release_since(mark_);
}

std::size_t tape_size(bool compact_now) {
  if (compact_now) compact();
  return tape.nodes.size();
}

}  // namespace metatape
