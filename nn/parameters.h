// Named parameter lists. A ParameterList is an ordered list of (name, Tensor) handles; copying the list
// copies handles, not values. Adapted parameters are just another ParameterList with the same names
// and shapes, so every model has a functional forward `forward(params, x)` (nn/model.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace metatape::nn {

class ParameterList {
 public:
  ParameterList() = default;

  // Appends a parameter; throws when the name is empty or already present.
  void add(std::string name, Tensor value);

  std::size_t size() const { return tensors_.size(); }
  bool empty() const { return tensors_.empty(); }
  const Tensor& operator[](std::size_t i) const { return tensors_.at(i); }
  Tensor& operator[](std::size_t i) { return tensors_.at(i); }
  const std::string& name(std::size_t i) const { return names_.at(i); }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::vector<std::string>& names() const { return names_; }

  bool contains(const std::string& name) const;
  // Index of `name`; throws naming the missing parameter and the ones present.
  std::size_t index(const std::string& name) const;
  const Tensor& get(const std::string& name) const { return tensors_[index(name)]; }

  // Same names, new tensors (e.g. the result of an inner SGD step). Throws when the count or a shape
  // differs.
  ParameterList with_tensors(std::vector<Tensor> tensors) const;
  // Deep copies with no autograd history; each copy requires grad when `requires_grad` is set.
  ParameterList clone(bool requires_grad = false) const;
  // Handles without history (shared storage).
  ParameterList detached() const;
  // Copies `source`'s values into these tensors in place (names and shapes must match); not recorded.
  void assign(const ParameterList& source);
  // The entries whose names start with `prefix`, in order.
  ParameterList select(const std::string& prefix) const;
  // Every tensor's requires_grad flag.
  void requires_grad_(bool value = true);

  std::int64_t numel() const;
  // Throws naming the first parameter whose name, shape or dtype differs from `other`'s.
  void check_same_layout(const ParameterList& other, const std::string& what) const;

 private:
  std::vector<std::string> names_;
  std::vector<Tensor> tensors_;
};

}  // namespace metatape::nn
