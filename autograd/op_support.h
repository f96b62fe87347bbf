// Internal to autograd/ops_*.cpp: argument checks with messages that name the op and the shapes.
#pragma once

#include <string>

#include "autograd/tape.h"
#include "autograd/tensor.h"
#include "kernels/kernels.h"

namespace metatape::detail {

inline Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }
inline Tensor empty_as(const Tensor& t, const Shape& shape) { return Tensor::empty(shape, t.dtype(), t.device()); }

inline void check_float(const char* op, const Tensor& t) {
  if (t.dtype() == DType::i64) {
    fail(std::string(op) + ": needs a floating-point tensor, got " + describe(t));
  }
}

inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    fail(std::string(op) + ": dtypes differ, " + describe(a) + " and " + describe(b) +
         " (convert one with .to(DType::...))");
  }
  check_float(op, a);
}

inline void check_rank(const char* op, const Tensor& t, int lo, int hi, const char* role) {
  if (t.rank() < lo || t.rank() > hi) {
    fail(std::string(op) + ": " + role + " must have rank " + std::to_string(lo) +
         (lo == hi ? "" : ".." + std::to_string(hi)) + ", got " + describe(t));
  }
}

inline int normalize_axis(const char* op, const Tensor& t, int axis) {
  const int a = axis < 0 ? axis + t.rank() : axis;
  if (a < 0 || a >= t.rank()) {
    fail(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " + describe(t));
  }
  return a;
}

inline void check_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  if (labels.dtype() != DType::i64 || labels.rank() != 1 || labels.dim(0) != logits.dim(0)) {
    fail(std::string(op) + ": labels must be i64 of shape (" + std::to_string(logits.dim(0)) + ") to match logits " +
         logits.shape().str() + ", got " + describe(labels));
  }
}

}  // namespace metatape::detail
