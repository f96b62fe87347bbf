// Tensor: a cheap handle (shared pointer) to storage, shape, dtype, device and autograd state.
// Layout: contiguous, row-major, rank 0..4, `offset` bytes into a shared Storage (views such as
// reshape and detach share storage). A leading dimension may be a task dimension.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "kernels/error.h"
#include "kernels/view.h"

namespace metatape {

using kernels::Device;
using kernels::DType;
using kernels::Shape;

// A block of memory on one device, freed through kernels::deallocate.
class Storage {
 public:
  Storage(std::size_t bytes, Device device);
  // Wraps `bytes` of memory owned elsewhere (no copy, e.g. a NumPy array or a DLPack tensor): it is
  // never freed here; `owner` is held until the storage dies (its deleter releases the memory's owner).
  Storage(void* data, std::size_t bytes, Device device, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Device device_ = Device::cpu;
  std::shared_ptr<void> owner_;  // set for wrapped external memory
};

struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  std::size_t offset = 0;  // bytes
  Shape shape;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  std::string name;

  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;   // accumulated by backward() on leaves
  std::weak_ptr<Node> producer;       // the tape node that made this tensor, while it is alive
  const char* producer_op = nullptr;  // set once recorded; stays when the node is released
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- construction -------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor arange(std::int64_t n, DType dtype = DType::f32, Device device = Device::cpu);
  // Values in row-major order; throws when their count differs from shape.numel().
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                            Device device = Device::cpu);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, DType dtype = DType::f32,
                            Device device = Device::cpu);
  // Integer class labels or row indices (dtype i64), rank 1.
  static Tensor indices(const std::vector<std::int64_t>& values, Device device = Device::cpu);
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = DType::f32,
                        Device device = Device::cpu);
  static Tensor normal(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype = DType::f32,
                       Device device = Device::cpu);

  // ---- properties ---------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return checked().shape; }
  int rank() const { return checked().shape.rank; }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const { return checked().shape.numel(); }
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().device; }
  const std::string& name() const { return checked().name; }
  Tensor& set_name(std::string name);
  kernels::View view() const;
  void* raw_data() const;
  template <class T>
  T* data() const;  // CPU tensors only; T must match dtype

  // ---- values (copied to the host when needed) ----------------------------------------------------
  double item() const;  // one-element tensors only
  double at(std::initializer_list<std::int64_t> index) const;
  template <class T>
  std::vector<T> to_vector() const;
  std::string str() const;

  // ---- copies and views ---------------------------------------------------------------------------
  Tensor to(Device device) const;  // a copy on `device` (this tensor if already there); not recorded
  Tensor to(DType dtype) const;    // a converted copy; not recorded
  Tensor detach() const;           // shares storage, no autograd history
  // Elements [first, first + shape.numel()) of this tensor (contiguous, row-major) as a tensor of
  // `shape` sharing its storage: no copy, no autograd history. Throws when the range is outside.
  Tensor piece(std::int64_t first, const Shape& shape) const;
  Tensor copy() const;             // a deep copy, no autograd history
  // Overwrites this tensor's values with `source`'s (same shape and dtype); not recorded.
  void assign(const Tensor& source);

  // ---- autograd -----------------------------------------------------------------------------------
  bool requires_grad() const { return checked().requires_grad; }
  Tensor& requires_grad_(bool value = true);
  bool is_leaf() const { return checked().producer_op == nullptr; }
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  void zero_grad();
  // Accumulates d(this)/d(leaf) into every reachable leaf's grad(). `this` must be a scalar unless
  // grad_output is given. See autograd/tape.h.
  void backward(const Tensor& grad_output = Tensor(), bool create_graph = false) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& out, const Tensor& t);

// "tensor 'w1' (128, 50) f32" or "tensor (128, 50) f32", for error messages.
std::string describe(const Tensor& t);

}  // namespace metatape
