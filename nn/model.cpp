#include "nn/model.h"

#include "kernels/error.h"

namespace metatape::nn {

Tensor Model::forward_body(const ParameterList&, const Tensor&) const {
  fail("model " + describe() + " has no body/head split (ANIL needs one: use an MLP of two or more layers or a "
       "backbone with a head)");
}

Tensor Model::forward_head(const ParameterList&, const Tensor&) const {
  fail("model " + describe() + " has no body/head split (ANIL needs one: use an MLP of two or more layers or a "
       "backbone with a head)");
}

}  // namespace metatape::nn
