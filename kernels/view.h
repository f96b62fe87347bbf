// Plain views of memory that every kernel takes: pointer, shape, dtype, device.
// Layout contract: contiguous, row-major, rank 0..4. Kernels never allocate their outputs; the caller
// passes an output view of the right shape and each kernel overwrites it ("=" semantics) unless its
// comment says "+=".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace metatape::kernels {

enum class DType : std::uint8_t { f32, f64, i64 };
enum class Device : std::uint8_t { cpu, cuda };

constexpr int max_rank = 4;

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

struct Shape {
  int rank = 0;
  std::array<std::int64_t, max_rank> dims{};

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> list);
  static Shape of_rank(int rank);

  std::int64_t numel() const;
  std::int64_t operator[](int axis) const { return dims[static_cast<std::size_t>(axis)]; }
  std::int64_t& operator[](int axis) { return dims[static_cast<std::size_t>(axis)]; }
  std::int64_t last() const { return rank == 0 ? 1 : dims[static_cast<std::size_t>(rank - 1)]; }
  bool operator==(const Shape& other) const;
  bool operator!=(const Shape& other) const { return !(*this == other); }
  std::string str() const;  // "(3, 50)"; "()" for a scalar
};

// The broadcast of two shapes (numpy rules, ranks aligned on the right); throws naming `op` and both
// shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// `small` left-padded with ones to `rank` dims.
Shape pad_rank(const Shape& small, int rank);

struct View {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::f32;
  Device device = Device::cpu;

  std::int64_t numel() const { return shape.numel(); }
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

}  // namespace metatape::kernels
