// support_sharpness: the power iteration on Hessian-vector products finds the known top eigenvalue of
// a least-squares problem, and refuses bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "meta/sharpness.h"
#include "nn/mlp.h"

using namespace metatape;

TEST_CASE("support_sharpness finds the top Hessian eigenvalue of a linear least-squares task") {
  // y = w . x + b with MSE over 4 rows: H = (2/4) A^T A for A = [x, 1]. The columns of A below are
  // orthogonal with squared norms 36, 4, 4, so H = diag(18, 2, 2) and lambda_max = 18.
  auto model =
      std::make_shared<nn::Mlp>(nn::MlpSpec{{2, 1}, nn::Activation::none, nn::Init::uniform_fan_in, DType::f64});
  Generator gen(3);
  const nn::ParameterList params = model->init(gen);
  tasks::Task task;
  task.kind = tasks::TaskKind::regression;
  task.support_x = Tensor::from_vector(std::vector<double>{3, 1, 3, -1, -3, 1, -3, -1}, Shape{4, 2}, DType::f64);
  task.support_y = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0, 0.25}, Shape{4, 1}, DType::f64);
  const meta::Sharpness s = meta::support_sharpness(*model, params, task, 200, 1e-12);
  CHECK(s.lambda_max == doctest::Approx(18.0).epsilon(1e-9));
  CHECK(s.residual < 1e-4);
  CHECK(s.iterations > 1);

  CHECK_THROWS_WITH_AS(meta::support_sharpness(*model, params, task, 0), doctest::Contains("max_iterations"),
                       std::exception);
  CHECK_THROWS_WITH_AS(meta::support_sharpness(*model, nn::ParameterList{}, task), doctest::Contains("empty"),
                       std::exception);
  task.support_y = Tensor::from_vector(std::vector<double>{NAN, 0, 0, 0}, Shape{4, 1}, DType::f64);
  CHECK_THROWS_WITH_AS(meta::support_sharpness(*model, params, task), doctest::Contains("not finite"), std::exception);
}
