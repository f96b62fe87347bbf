// Seeded initialisers. Every draw comes from the caller's Generator, so the same seed gives the same
// parameters on every machine.
#pragma once

#include <cstdint>
#include <string>

#include "autograd/random.h"
#include "autograd/tensor.h"

namespace metatape::nn {

enum class Init {
  uniform_fan_in,   // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (PyTorch's Linear)
  kaiming_uniform,  // weights U(-b, b), b = sqrt(6 / fan_in) (ReLU gain); biases zero
  kaiming_normal,   // weights N(0, 2 / fan_in); biases zero
  xavier_uniform,   // weights U(-b, b), b = sqrt(6 / (fan_in + fan_out)); biases zero
  xavier_normal,    // weights N(0, 2 / (fan_in + fan_out)); biases zero
  small_normal,     // weights N(0, 0.01^2) truncated at 2 standard deviations (out-of-range draws are
                    // redrawn, as TensorFlow's truncated_normal); biases zero. The MAML authors' code
                    // initialises its sinusoid MLP this way.
};
Init parse_init(const std::string& name);  // "uniform_fan_in", "kaiming_uniform", ..., "small_normal"
std::string init_name(Init init);

// A weight of shape (fan_out, fan_in) and its bias (fan_out), neither requiring grad yet.
Tensor init_weight(Init init, std::int64_t fan_out, std::int64_t fan_in, Generator& gen, DType dtype,
                   Device device = Device::cpu);
Tensor init_bias(Init init, std::int64_t fan_out, std::int64_t fan_in, Generator& gen, DType dtype,
                 Device device = Device::cpu);

}  // namespace metatape::nn
