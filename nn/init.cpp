#include "nn/init.h"

#include <cmath>
#include <vector>

#include "kernels/error.h"

namespace metatape::nn {
namespace {
const char* const init_names[] = {"uniform_fan_in", "kaiming_uniform", "kaiming_normal",
                                  "xavier_uniform", "xavier_normal",   "small_normal"};
constexpr int init_count = static_cast<int>(sizeof init_names / sizeof init_names[0]);

void check_fans(const char* what, std::int64_t fan_out, std::int64_t fan_in) {
  if (fan_out <= 0 || fan_in <= 0) {
    fail(std::string(what) + ": fan_out and fan_in must be positive, got " + std::to_string(fan_out) + " and " +
         std::to_string(fan_in));
  }
}
}  // namespace

Init parse_init(const std::string& name) {
  for (int i = 0; i < init_count; ++i) {
    if (name == init_names[i]) return static_cast<Init>(i);
  }
  fail("init: unknown initialiser '" + name +
       "' (choose uniform_fan_in, kaiming_uniform, kaiming_normal, xavier_uniform, xavier_normal, "
       "small_normal)");
}

std::string init_name(Init init) { return init_names[static_cast<int>(init)]; }

Tensor init_weight(Init init, std::int64_t fan_out, std::int64_t fan_in, Generator& gen, DType dtype, Device device) {
  check_fans("init_weight", fan_out, fan_in);
  const Shape shape{fan_out, fan_in};
  const double in = static_cast<double>(fan_in), out = static_cast<double>(fan_out);
  switch (init) {
    case Init::uniform_fan_in: {
      const double b = 1.0 / std::sqrt(in);
      return Tensor::uniform(shape, -b, b, gen, dtype, device);
    }
    case Init::kaiming_uniform: {
      const double b = std::sqrt(6.0 / in);
      return Tensor::uniform(shape, -b, b, gen, dtype, device);
    }
    case Init::kaiming_normal:
      return Tensor::normal(shape, 0.0, std::sqrt(2.0 / in), gen, dtype, device);
    case Init::xavier_uniform: {
      const double b = std::sqrt(6.0 / (in + out));
      return Tensor::uniform(shape, -b, b, gen, dtype, device);
    }
    case Init::xavier_normal:
      return Tensor::normal(shape, 0.0, std::sqrt(2.0 / (in + out)), gen, dtype, device);
    case Init::small_normal: {
      constexpr double stddev = 0.01;
      std::vector<double> values(static_cast<std::size_t>(fan_out * fan_in));
      for (auto& v : values) {
        do {
          v = gen.normal();
        } while (std::abs(v) > 2.0);
        v *= stddev;
      }
      return Tensor::from_vector(values, shape, dtype).to(device);
    }
  }
  fail("init_weight: unknown initialiser");
}

Tensor init_bias(Init init, std::int64_t fan_out, std::int64_t fan_in, Generator& gen, DType dtype, Device device) {
  check_fans("init_bias", fan_out, fan_in);
  if (init == Init::uniform_fan_in) {
    const double b = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return Tensor::uniform(Shape{fan_out}, -b, b, gen, dtype, device);
  }
  return Tensor::zeros(Shape{fan_out}, dtype, device);
}

}  // namespace metatape::nn
