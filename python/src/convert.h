// Conversions between Python objects and metatape tensors, shared by the binding files.
//
// Memory contract: from_ndarray wraps the array's memory (no copy) in a Storage that holds a
// reference to the array until the last tensor using it dies; to_numpy returns an array over the
// tensor's memory whose owner capsule holds the tensor. Either side can therefore outlive the other,
// and writes through one are seen by the other. A Storage may die on a thread that does not hold the
// GIL (inside a call that released it): its owner's deleter takes the GIL before touching Python.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <optional>
#include <string>

#include "autograd/tensor.h"

namespace nb = nanobind;

namespace metatape::python {

// Return types that read well in the stubs (numpy.typing.NDArray, dict[str, NDArray], ...).
using NumpyArray = nb::typed<nb::object, nb::ndarray<nb::numpy>>;
using ArrayDict = nb::typed<nb::dict, nb::str, nb::ndarray<nb::numpy>>;
using MetricsDict = nb::typed<nb::dict, nb::str, nb::any>;

// str(obj) as UTF-8.
std::string py_text(nb::handle obj);

// "float32" / "f32" / "float64" / "f64" / "int64" / "i64" (also numpy dtypes, through str()).
DType parse_dtype(nb::handle dtype);
const char* dtype_text(DType dtype);  // "float32", "float64", "int64"

// Wraps a C-contiguous, aligned, writable float32 / float64 / int64 CPU array (CUDA too when the
// CUDA backend is built) of rank <= 4 without copying. Throws naming `what` and the fix otherwise.
Tensor from_ndarray(const nb::ndarray<>& array, const std::string& what);
// A NumPy array sharing the tensor's memory (CPU tensors only).
NumpyArray to_numpy(const Tensor& t);
// A DLPack-capable nanobind ndarray over the tensor's memory (CPU or CUDA).
nb::object to_dlpack_array(const Tensor& t);

// A Tensor as is; an array-like wrapped without a copy when from_ndarray accepts it, else converted
// with numpy.ascontiguousarray (to `dtype` when given, else float arrays keep float32/float64 and
// integer arrays become int64).
Tensor as_tensor(nb::handle obj, const std::string& what, std::optional<DType> dtype = std::nullopt);

}  // namespace metatape::python
