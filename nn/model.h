// A model is a pure function of a parameter list and an input: `forward(params, x)`. It owns no
// parameters; `init` makes a fresh list with the model's names and shapes. Adapted parameters (an
// inner-loop result) are passed to the same forward.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "nn/parameters.h"

namespace metatape::nn {

class Model {
 public:
  virtual ~Model() = default;
  // Fresh parameters (leaves requiring grad), drawn from `gen`.
  virtual ParameterList init(Generator& gen) const = 0;
  // x (rows, in_features) -> (rows, out_features). Differentiable in params and x.
  virtual Tensor forward(const ParameterList& params, const Tensor& x) const = 0;
  virtual std::int64_t in_features() const = 0;
  virtual std::int64_t out_features() const = 0;
  virtual DType dtype() const = 0;
  // A one-line description, e.g. "mlp 1-40-40-1 relu f32", stored in checkpoints.
  virtual std::string describe() const = 0;

  // The body/head split that ANIL adapts across: parameters [0, head_parameter_start()) are the
  // body, the rest the head, and forward(p, x) == forward_head(p, forward_body(p, x)) for every p.
  // 0 (the default) means the model has no split; forward_body and forward_head then throw.
  virtual std::size_t head_parameter_start() const { return 0; }
  // (rows, in_features) -> (rows, body features). Reads only the body's parameters of `params`.
  virtual Tensor forward_body(const ParameterList& params, const Tensor& x) const;
  // (rows, body features) -> (rows, out_features). Reads only the head's parameters of `params`.
  virtual Tensor forward_head(const ParameterList& params, const Tensor& features) const;
};

}  // namespace metatape::nn
