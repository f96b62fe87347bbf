// tasks/gaussian_classes.h: shapes, labels grouped by class, seeded determinism, the class signal,
// and errors naming the bad option.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"
#include "tasks/gaussian_classes.h"

using namespace metatape;

TEST_CASE("gaussian classes: shapes, grouped labels, determinism and errors") {
  tasks::GaussianClassesOptions o;
  o.classes = 4;
  o.features = 7;
  o.support_per_class = 2;
  o.query_per_class = 3;
  o.noise = 0.0;  // rows equal their class mean
  Generator a(9), b(9);
  const tasks::Task t = tasks::sample_gaussian_classes(a, o);
  CHECK(t.kind == tasks::TaskKind::classification);
  CHECK(t.num_classes == 4);
  CHECK(t.support_x.shape() == Shape{8, 7});
  CHECK(t.query_x.shape() == Shape{12, 7});
  CHECK(t.support_y.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 0, 1, 1, 2, 2, 3, 3});
  const auto sx = t.support_x.to_vector<float>(), qx = t.query_x.to_vector<float>();
  for (int f = 0; f < 7; ++f) {
    CHECK(sx[f] == sx[7 + f]);      // the two support rows of class 0 are its mean
    CHECK(qx[f] == sx[f]);          // and so is every query row of class 0
    CHECK(sx[f] != sx[2 * 7 + f]);  // class 1 has another mean
  }
  CHECK(tasks::sample_gaussian_classes(b, o).support_x.to_vector<float>() == sx);
  CHECK(tasks::sample_gaussian_classes_batch(a, 3, o).size() == 3);

  o.classes = 0;
  CHECK_THROWS_WITH_AS(tasks::sample_gaussian_classes(a, o), doctest::Contains("classes"), std::exception);
  o.classes = 2;
  o.noise = -1.0;
  CHECK_THROWS_WITH_AS(tasks::sample_gaussian_classes(a, o), doctest::Contains("noise"), std::exception);
  o.noise = 1.0;
  CHECK_THROWS_WITH_AS(tasks::sample_gaussian_classes_batch(a, 0, o), doctest::Contains("task"), std::exception);
}
