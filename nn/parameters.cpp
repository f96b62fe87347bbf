#include "nn/parameters.h"

#include "kernels/error.h"

namespace metatape::nn {

void ParameterList::add(std::string name, Tensor value) {
  if (name.empty()) fail("ParameterList::add: a parameter needs a non-empty name");
  if (!value.defined()) fail("ParameterList::add: parameter '" + name + "' is an undefined tensor");
  if (contains(name)) fail("ParameterList::add: parameter '" + name + "' is already in the list");
  if (value.name().empty()) value.set_name(name);
  names_.push_back(std::move(name));
  tensors_.push_back(std::move(value));
}

bool ParameterList::contains(const std::string& name) const {
  for (const auto& n : names_) {
    if (n == name) return true;
  }
  return false;
}

std::size_t ParameterList::index(const std::string& name) const {
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return i;
  }
  std::string present;
  for (const auto& n : names_) present += (present.empty() ? "" : ", ") + n;
  fail("ParameterList: no parameter named '" + name +
       "' (present: " + (present.empty() ? std::string("none") : present) + ")");
}

ParameterList ParameterList::with_tensors(std::vector<Tensor> tensors) const {
  if (tensors.size() != tensors_.size()) {
    fail("ParameterList::with_tensors: " + std::to_string(tensors.size()) + " tensors for " +
         std::to_string(tensors_.size()) + " parameters");
  }
  ParameterList out;
  out.names_ = names_;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined() || tensors[i].shape() != tensors_[i].shape()) {
      fail("ParameterList::with_tensors: parameter '" + names_[i] + "' expects shape " + tensors_[i].shape().str() +
           ", got " + (tensors[i].defined() ? tensors[i].shape().str() : std::string("an undefined tensor")));
    }
  }
  out.tensors_ = std::move(tensors);
  return out;
}

ParameterList ParameterList::clone(bool requires_grad) const {
  ParameterList out;
  out.names_ = names_;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    Tensor c = tensors_[i].copy();
    c.set_name(names_[i]);
    if (requires_grad) c.requires_grad_();
    out.tensors_.push_back(c);
  }
  return out;
}

ParameterList ParameterList::detached() const {
  ParameterList out;
  out.names_ = names_;
  for (const auto& t : tensors_) out.tensors_.push_back(t.detach());
  return out;
}

void ParameterList::assign(const ParameterList& source) {
  check_same_layout(source, "ParameterList::assign");
  for (std::size_t i = 0; i < tensors_.size(); ++i) tensors_[i].assign(source.tensors_[i]);
}

ParameterList ParameterList::select(const std::string& prefix) const {
  ParameterList out;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i].compare(0, prefix.size(), prefix) == 0) {
      out.names_.push_back(names_[i]);
      out.tensors_.push_back(tensors_[i]);
    }
  }
  return out;
}

void ParameterList::requires_grad_(bool value) {
  for (auto& t : tensors_) t.requires_grad_(value);
}

std::int64_t ParameterList::numel() const {
  std::int64_t n = 0;
  for (const auto& t : tensors_) n += t.numel();
  return n;
}

void ParameterList::check_same_layout(const ParameterList& other, const std::string& what) const {
  if (other.size() != size()) {
    fail(what + ": " + std::to_string(other.size()) + " parameters, expected " + std::to_string(size()));
  }
  for (std::size_t i = 0; i < size(); ++i) {
    if (other.names_[i] != names_[i]) {
      fail(what + ": parameter #" + std::to_string(i) + " is named '" + other.names_[i] + "', expected '" + names_[i] +
           "'");
    }
    if (other.tensors_[i].shape() != tensors_[i].shape() || other.tensors_[i].dtype() != tensors_[i].dtype()) {
      fail(what + ": parameter '" + names_[i] + "' is " + describe(other.tensors_[i]) + ", expected " +
           describe(tensors_[i]));
    }
  }
}

}  // namespace metatape::nn
