// Internal to the CPU backend (kernels/cpu/*.cpp): the Eigen views its kernels take of raw row-major
// buffers. In namespace metatape::kernels so that cpu:: kernels and the fused executors share them.
#pragma once

#include <Eigen/Core>

namespace metatape::kernels {

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapC = Eigen::Map<const Matrix<T>>;  // a read-only row-major matrix view
template <class T>
using Map = Eigen::Map<Matrix<T>>;
template <class T>
using RowC = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;  // a read-only row vector view
template <class T>
using Row = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;

}  // namespace metatape::kernels
