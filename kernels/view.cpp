#include "kernels/view.h"

#include <sstream>

#include "kernels/error.h"

namespace metatape {

void fail(const std::string& message) { throw Error("metatape: " + message); }

}  // namespace metatape

namespace metatape::kernels {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i64:
      return "i64";
  }
  return "?";
}

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<std::int64_t> list) {
  if (list.size() > static_cast<std::size_t>(max_rank)) {
    fail("shape: rank " + std::to_string(list.size()) + " is over the maximum of " + std::to_string(max_rank) +
         " (reshape to fewer dims)");
  }
  for (std::int64_t d : list) {
    if (d < 0) fail("shape: negative dimension " + std::to_string(d));
    dims[static_cast<std::size_t>(rank++)] = d;
  }
}

Shape Shape::of_rank(int r) {
  if (r < 0 || r > max_rank) {
    fail("shape: rank " + std::to_string(r) + " is outside 0.." + std::to_string(max_rank));
  }
  Shape s;
  s.rank = r;
  for (int i = 0; i < r; ++i) s[i] = 1;
  return s;
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[static_cast<std::size_t>(i)];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (rank != other.rank) return false;
  for (int i = 0; i < rank; ++i) {
    if ((*this)[i] != other[i]) return false;
  }
  return true;
}

std::string Shape::str() const {
  std::ostringstream out;
  out << '(';
  for (int i = 0; i < rank; ++i) out << (i ? ", " : "") << (*this)[i];
  out << ')';
  return out.str();
}

Shape pad_rank(const Shape& small, int rank) {
  Shape s = Shape::of_rank(rank);
  for (int i = 0; i < small.rank; ++i) s[rank - small.rank + i] = small[i];
  return s;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int rank = a.rank > b.rank ? a.rank : b.rank;
  const Shape pa = pad_rank(a, rank);
  const Shape pb = pad_rank(b, rank);
  Shape out = Shape::of_rank(rank);
  for (int i = 0; i < rank; ++i) {
    if (pa[i] == pb[i] || pb[i] == 1) {
      out[i] = pa[i];
    } else if (pa[i] == 1) {
      out[i] = pb[i];
    } else {
      fail(std::string(op) + ": shapes " + a.str() + " and " + b.str() + " do not broadcast (dim " + std::to_string(i) +
           ": " + std::to_string(pa[i]) + " vs " + std::to_string(pb[i]) + ")");
    }
  }
  return out;
}

}  // namespace metatape::kernels
