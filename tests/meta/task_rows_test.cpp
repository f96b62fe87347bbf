// meta/task_rows.h in one process: the sums over tasks in task order, undefined tensors as zeros, the
// scalar columns and host values; dist::share_of and the one-process communicator. The same code
// under mpirun -np 2/4 is tests/scripts/mpi_test.sh.
#include <doctest/doctest.h>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "dist/communicator.h"
#include "kernels/error.h"
#include "meta/task_rows.h"

using namespace metatape;

TEST_CASE("TaskRows sums each task's tensors, scalars and host values over the batch, in one process") {
  NoGradGuard no_grad;
  tasks::TaskBatch batch(3);
  const Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, Shape{2, 2}, DType::f64);
  const Tensor b = Tensor::from_vector(std::vector<double>{5, 6, 7}, Shape{3}, DType::f64);
  meta::TaskRows rows(batch, {a, b}, 2);
  CHECK(rows.share().begin == 0);
  CHECK(rows.share().end == 3);
  rows.add({a, b}, {Tensor::scalar(0.5, DType::f64), Tensor::scalar(1.5, DType::f64)}, 0.25);
  rows.add({affine(a, 10.0, 0.0), Tensor()}, {Tensor::scalar(1.0, DType::f64)}, 0.5);  // b and the 2nd scalar: 0
  rows.add({a, b}, {}, 1.0);
  const meta::TaskRows::Sums s = rows.sum();
  REQUIRE(s.tensors.size() == 2);
  CHECK(s.tensors[0].shape() == a.shape());
  CHECK(s.tensors[0].to_vector<double>() == std::vector<double>{12, 24, 36, 48});
  CHECK(s.tensors[1].to_vector<double>() == std::vector<double>{10, 12, 14});
  REQUIRE(s.scalars.size() == 2);
  CHECK(s.scalars[0].item() == 1.5);
  CHECK(s.scalars[1].item() == 1.5);
  CHECK(s.host == 1.75);
}

TEST_CASE("TaskRows refuses rows that do not fit") {
  NoGradGuard no_grad;
  tasks::TaskBatch batch(1);
  const Tensor a = Tensor::zeros(Shape{2}, DType::f64);
  meta::TaskRows rows(batch, {a}, 0);
  CHECK_THROWS_AS(rows.add({a, a}, {}), Error);
  CHECK_THROWS_AS(rows.sum(), Error);  // fewer rows than tasks
  rows.add({a}, {});
  CHECK_THROWS_AS(rows.add({a}, {}), Error);  // more rows than tasks
}

TEST_CASE("share_of cuts items into contiguous, balanced shares in rank order") {
  CHECK(dist::share_of(8, 0, 3).begin == 0);
  CHECK(dist::share_of(8, 0, 3).end == 2);
  CHECK(dist::share_of(8, 1, 3).end == 5);
  CHECK(dist::share_of(8, 2, 3).end == 8);
  CHECK(dist::share_of(1, 0, 2).size() == 0);  // fewer items than ranks: some shares are empty
  CHECK(dist::share_of(1, 1, 2).size() == 1);
  CHECK_THROWS_AS(dist::share_of(4, 2, 2), Error);
  const std::shared_ptr<const dist::Communicator> owner = dist::local_communicator();
  const dist::Communicator& local = *owner;
  CHECK(local.size() == 1);
  CHECK(local.backend() == "local");
  const Tensor rows = Tensor::zeros(Shape{3, 2}, DType::f64);
  CHECK(local.all_gather_rows(rows, 3).shape() == rows.shape());
  CHECK_THROWS_AS(local.all_gather_rows(rows, 4), Error);
  CHECK(local.all_gather_items({{1.0}, {}, {2.0, 3.0}}, 3).size() == 3);
  CHECK(local.any(true));
  CHECK_FALSE(local.any(false));
}
