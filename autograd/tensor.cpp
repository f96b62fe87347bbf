#include "autograd/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "autograd/tape.h"
#include "kernels/allocator.h"
#include "kernels/kernels.h"

namespace metatape {

Storage::Storage(std::size_t bytes, Device device)
    : data_(kernels::allocate(bytes, device)), bytes_(bytes), device_(device) {}

Storage::Storage(void* data, std::size_t bytes, Device device, std::shared_ptr<void> owner)
    : data_(data), bytes_(bytes), device_(device), owner_(std::move(owner)) {
  if (!owner_) fail("tensor: wrapping external memory needs its owner (a non-null keep-alive handle)");
}

Storage::~Storage() {
  if (!owner_) kernels::deallocate(data_, bytes_, device_);
}

TensorImpl& Tensor::checked() const {
  if (!impl_) fail("tensor: used an undefined (empty) Tensor handle; construct it first");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * kernels::dtype_size(dtype);
  impl->storage = std::make_shared<Storage>(bytes, device);
  impl->shape = shape;
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  kernels::fill(t.view(), value);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::scalar(double value, DType dtype, Device device) { return full(Shape{}, value, dtype, device); }

Tensor Tensor::arange(std::int64_t n, DType dtype, Device device) {
  std::vector<double> values(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = static_cast<double>(i);
  return from_vector(values, Shape{n}, dtype, device);
}

namespace {

template <class Source>
Tensor from_host_values(const std::vector<Source>& values, const Shape& shape, DType dtype, Device device) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
    fail("tensor: " + std::to_string(values.size()) + " values given for shape " + shape.str() + " which holds " +
         std::to_string(shape.numel()));
  }
  Tensor host = Tensor::empty(shape, dtype, Device::cpu);
  const std::size_t n = values.size();
  switch (dtype) {
    case DType::f32:
      for (std::size_t i = 0; i < n; ++i) host.data<float>()[i] = static_cast<float>(values[i]);
      break;
    case DType::f64:
      for (std::size_t i = 0; i < n; ++i) host.data<double>()[i] = static_cast<double>(values[i]);
      break;
    case DType::i64:
      for (std::size_t i = 0; i < n; ++i) host.data<std::int64_t>()[i] = static_cast<std::int64_t>(values[i]);
      break;
  }
  return host.to(device);
}

}  // namespace

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  return from_host_values(values, shape, dtype, device);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype, Device device) {
  return from_host_values(values, shape, dtype, device);
}

Tensor Tensor::indices(const std::vector<std::int64_t>& values, Device device) {
  return from_host_values(values, Shape{static_cast<std::int64_t>(values.size())}, DType::i64, device);
}

Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) v = gen.uniform(lo, hi);
  return from_vector(values, shape, dtype, device);
}

Tensor Tensor::normal(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype, Device device) {
  std::vector<double> values(static_cast<std::size_t>(shape.numel()));
  for (double& v : values) v = mean + stddev * gen.normal();
  return from_vector(values, shape, dtype, device);
}

std::int64_t Tensor::dim(int axis) const {
  const int r = rank();
  const int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) {
    fail("tensor: axis " + std::to_string(axis) + " is out of range for " + describe(*this));
  }
  return shape()[a];
}

Tensor& Tensor::set_name(std::string name) {
  checked().name = std::move(name);
  return *this;
}

void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  return static_cast<char*>(t.storage->data()) + t.offset;
}

kernels::View Tensor::view() const {
  const TensorImpl& t = checked();
  return kernels::View{raw_data(), t.shape, t.dtype, t.device};
}

template <class T>
T* Tensor::data() const {
  const TensorImpl& t = checked();
  constexpr DType expected = std::is_same_v<T, float>    ? DType::f32
                             : std::is_same_v<T, double> ? DType::f64
                                                         : DType::i64;
  if (t.dtype != expected) {
    fail(std::string("tensor: data<") + kernels::dtype_name(expected) + ">() on " + describe(*this));
  }
  if (t.device != Device::cpu) {
    fail("tensor: data() needs a CPU tensor, got " + describe(*this) + "; use .to(Device::cpu)");
  }
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template std::int64_t* Tensor::data<std::int64_t>() const;

template <class T>
std::vector<T> Tensor::to_vector() const {
  const Tensor host = to(Device::cpu);
  std::vector<T> out(static_cast<std::size_t>(numel()));
  const std::size_t n = out.size();
  switch (dtype()) {
    case DType::f32:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(host.data<float>()[i]);
      break;
    case DType::f64:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(host.data<double>()[i]);
      break;
    case DType::i64:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(host.data<std::int64_t>()[i]);
      break;
  }
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<std::int64_t> Tensor::to_vector<std::int64_t>() const;

double Tensor::item() const {
  if (numel() != 1) fail("tensor: item() needs a one-element tensor, got " + describe(*this));
  return to_vector<double>()[0];
}

double Tensor::at(std::initializer_list<std::int64_t> index) const {
  const Shape& s = shape();
  if (static_cast<int>(index.size()) != s.rank) {
    fail("tensor: at() got " + std::to_string(index.size()) + " indices for " + describe(*this));
  }
  std::int64_t linear = 0;
  int axis = 0;
  for (std::int64_t i : index) {
    if (i < 0 || i >= s[axis]) {
      fail("tensor: index " + std::to_string(i) + " on axis " + std::to_string(axis) + " is out of range for " +
           describe(*this));
    }
    linear = linear * s[axis] + i;
    ++axis;
  }
  const std::size_t elem = kernels::dtype_size(dtype());
  Tensor one = Tensor::empty(Shape{}, dtype(), Device::cpu);
  kernels::View src{static_cast<char*>(raw_data()) + static_cast<std::size_t>(linear) * elem, Shape{}, dtype(),
                    device()};
  kernels::copy(src, one.view());
  return one.item();
}

Tensor Tensor::to(Device device) const {
  if (this->device() == device) return *this;
  Tensor out = empty(shape(), dtype(), device);
  kernels::copy(view(), out.view());
  out.impl_->name = name();
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (this->dtype() == dtype) return *this;
  Tensor out = empty(shape(), dtype, device());
  kernels::convert(view(), out.view());
  out.impl_->name = name();
  return out;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  const TensorImpl& t = checked();
  impl->storage = t.storage;
  impl->offset = t.offset;
  impl->shape = t.shape;
  impl->dtype = t.dtype;
  impl->device = t.device;
  impl->name = t.name;
  return Tensor(std::move(impl));
}

Tensor Tensor::piece(std::int64_t first, const Shape& shape) const {
  const TensorImpl& t = checked();
  if (first < 0 || shape.numel() < 0 || first + shape.numel() > t.shape.numel()) {
    fail("piece: elements [" + std::to_string(first) + ", " + std::to_string(first + shape.numel()) +
         ") are outside " + describe(*this));
  }
  Tensor out = detach();
  out.impl_->offset = t.offset + static_cast<std::size_t>(first) * kernels::dtype_size(t.dtype);
  out.impl_->shape = shape;
  return out;
}

Tensor Tensor::copy() const {
  Tensor out = empty(shape(), dtype(), device());
  kernels::copy(view(), out.view());
  out.impl_->name = name();
  return out;
}

void Tensor::assign(const Tensor& source) {
  if (source.shape() != shape() || source.dtype() != dtype()) {
    fail("assign: source " + describe(source) + " does not match destination " + describe(*this));
  }
  kernels::copy(source.view(), view());
}

Tensor& Tensor::requires_grad_(bool value) {
  TensorImpl& t = checked();
  if (value && t.dtype == DType::i64) {
    fail("requires_grad: integer tensors cannot require a gradient (" + describe(*this) + ")");
  }
  t.requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(checked().grad); }

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined() && (grad.shape() != shape() || grad.dtype() != dtype())) {
    fail("set_grad: gradient " + describe(grad) + " does not match " + describe(*this));
  }
  checked().grad = grad.impl_;
}

void Tensor::zero_grad() { checked().grad.reset(); }

void Tensor::backward(const Tensor& grad_output, bool create_graph) const {
  metatape::backward(*this, grad_output, create_graph);
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  std::string s = "tensor ";
  if (!t.name().empty()) s += "'" + t.name() + "' ";
  s += t.shape().str() + " " + kernels::dtype_name(t.dtype());
  if (t.device() != Device::cpu) s += " on cuda";
  return s;
}

std::string Tensor::str() const {
  std::ostringstream out;
  out << *this;
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& t) {
  if (!t.defined()) return out << "Tensor(undefined)";
  out << "Tensor" << (t.name().empty() ? "" : "['" + t.name() + "']") << t.shape().str() << ' '
      << kernels::dtype_name(t.dtype());
  const std::vector<double> v = t.to_vector<double>();
  const std::int64_t cols = t.shape().last();
  out << " [";
  const std::size_t shown = v.size() > 64 ? 64 : v.size();
  for (std::size_t i = 0; i < shown; ++i) {
    if (i && cols > 0 && static_cast<std::int64_t>(i) % cols == 0) out << ';';
    out << (i ? " " : "") << std::setprecision(6) << v[i];
  }
  if (shown < v.size()) out << " ... (" << v.size() << " values)";
  return out << ']';
}

}  // namespace metatape
