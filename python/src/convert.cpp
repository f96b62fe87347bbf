#include "convert.h"

#include <nanobind/stl/string.h>

#include <cstdint>
#include <memory>

#include "kernels/error.h"

namespace metatape::python {

std::string py_text(nb::handle obj) {
  nb::str s(obj);
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(s.ptr(), &size);
  if (!data) throw nb::python_error();
  return std::string(data, static_cast<std::size_t>(size));
}

DType parse_dtype(nb::handle dtype) {
  std::string text = py_text((dtype));
  if (text == "float32" || text == "f32" || text == "<class 'numpy.float32'>") return DType::f32;
  if (text == "float64" || text == "f64" || text == "<class 'numpy.float64'>" || text == "<class 'float'>")
    return DType::f64;
  if (text == "int64" || text == "i64" || text == "<class 'numpy.int64'>" || text == "<class 'int'>") return DType::i64;
  fail("dtype: '" + text + "' is not supported; use 'float32', 'float64' or 'int64'");
}

const char* dtype_text(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i64:
      return "int64";
  }
  return "?";
}

namespace {

nb::dlpack::dtype dl_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return nb::dtype<float>();
    case DType::f64:
      return nb::dtype<double>();
    case DType::i64:
      return nb::dtype<std::int64_t>();
  }
  return nb::dtype<float>();
}

bool interpreter_alive() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

std::string dl_dtype_text(const nb::dlpack::dtype& d) {
  const char* code = d.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float)  ? "float"
                     : d.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Int)  ? "int"
                     : d.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::UInt) ? "uint"
                     : d.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bool) ? "bool"
                                                                                          : "other";
  return std::string(code) + std::to_string(d.bits);
}

}  // namespace

Tensor from_ndarray(const nb::ndarray<>& array, const std::string& what) {
  const std::size_t rank = array.ndim();
  if (rank > static_cast<std::size_t>(kernels::max_rank)) {
    fail(what + ": arrays of rank " + std::to_string(rank) + " are not supported (at most " +
         std::to_string(kernels::max_rank) + " dimensions); reshape it first");
  }
  DType dtype;
  const nb::dlpack::dtype d = array.dtype();
  if (d == nb::dtype<float>()) {
    dtype = DType::f32;
  } else if (d == nb::dtype<double>()) {
    dtype = DType::f64;
  } else if (d == nb::dtype<std::int64_t>()) {
    dtype = DType::i64;
  } else {
    fail(what + ": dtype " + dl_dtype_text(d) +
         " cannot be shared without a copy (float32, float64 and int64 can); convert it, e.g. "
         "array.astype(numpy.float32), or use metatape.tensor(array) which copies");
  }
  Device device = Device::cpu;
  if (array.device_type() == nb::device::cuda::value) {
#ifdef METATAPE_WITH_CUDA
    device = Device::cuda;
#else
    fail(what + ": the array is on a CUDA device but this metatape was built without the CUDA backend; move it "
                "to the CPU first (e.g. tensor.cpu())");
#endif
  } else if (array.device_type() != nb::device::cpu::value) {
    fail(what + ": arrays on DLPack device type " + std::to_string(array.device_type()) +
         " are not supported (CPU" +
#ifdef METATAPE_WITH_CUDA
         std::string(" and CUDA")
#else
         std::string("")
#endif
         + " are)");
  }
  Shape shape;
  shape.rank = static_cast<int>(rank);
  std::int64_t expected = 1;
  for (std::size_t i = rank; i-- > 0;) {
    shape.dims[i] = static_cast<std::int64_t>(array.shape(i));
    if (array.shape(i) != 1 && array.stride(i) != expected) {
      fail(what + ": the array is not C-contiguous (strides in elements differ from row-major); pass "
                  "numpy.ascontiguousarray(array), or use metatape.tensor(array) which copies");
    }
    expected *= shape.dims[i];
  }
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * kernels::dtype_size(dtype);
  if (shape.numel() > 0 && reinterpret_cast<std::uintptr_t>(array.data()) % kernels::dtype_size(dtype) != 0) {
    fail(what + ": the array's data is not aligned to its element size; copy it (numpy.array(array)) first");
  }
  auto impl = std::make_shared<TensorImpl>();
  if (shape.numel() == 0) {
    impl->storage = std::make_shared<Storage>(0, device);
  } else {
    // The owner: a reference to the array (its DLPack handle), released with the GIL held.
    auto* keep = new nb::ndarray<>(array);
    std::shared_ptr<void> owner(keep, [](void* p) {
      auto* a = static_cast<nb::ndarray<>*>(p);
      if (!interpreter_alive()) return;  // at exit: Python has already freed everything
      nb::gil_scoped_acquire gil;
      delete a;
    });
    impl->storage = std::make_shared<Storage>(array.data(), bytes, device, std::move(owner));
  }
  impl->shape = shape;
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

namespace {

template <class Framework>
nb::object wrap(const Tensor& t) {
  const Shape& s = t.shape();
  std::size_t shape[kernels::max_rank];
  for (int i = 0; i < s.rank; ++i) shape[i] = static_cast<std::size_t>(s.dims[static_cast<std::size_t>(i)]);
  auto* keep = new Tensor(t);
  nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  const int device_type = t.device() == Device::cuda ? nb::device::cuda::value : nb::device::cpu::value;
  void* data = t.numel() == 0 ? nullptr : t.raw_data();
  nb::ndarray<Framework> array(data, static_cast<std::size_t>(s.rank), shape, owner, nullptr, dl_dtype(t.dtype()),
                               device_type, 0);
  return nb::cast(array, nb::rv_policy::reference);
}

}  // namespace

NumpyArray to_numpy(const Tensor& t) {
  if (t.device() != Device::cpu) {
    fail("numpy: " + describe(t) + " is on " + kernels::device_name(t.device()) +
         "; copy it to the CPU first (tensor.to('cpu'))");
  }
  return wrap<nb::numpy>(t);
}

nb::object to_dlpack_array(const Tensor& t) { return wrap<nb::array_api>(t); }

Tensor as_tensor(nb::handle obj, const std::string& what, std::optional<DType> dtype) {
  if (nb::isinstance<Tensor>(obj)) {
    Tensor t = nb::cast<Tensor>(obj);
    if (!t.defined()) fail(what + ": the tensor is undefined");
    if (dtype && t.dtype() != *dtype) return t.to(*dtype);
    return t;
  }
  nb::ndarray<> array;
  if (nb::try_cast(obj, array, false)) {
    const nb::dlpack::dtype d = array.dtype();
    const bool plain = d == nb::dtype<float>() || d == nb::dtype<double>() || d == nb::dtype<std::int64_t>();
    if (plain && (!dtype || dl_dtype(*dtype) == d)) {
      try {
        return from_ndarray(array, what);
      } catch (const Error&) {
        // not shareable (strides, alignment): fall through to a converted copy
      }
    }
  }
  nb::module_ np = nb::module_::import_("numpy");
  nb::object converted;
  if (dtype) {
    converted = np.attr("ascontiguousarray")(obj, nb::arg("dtype") = dtype_text(*dtype));
  } else {
    nb::object a = np.attr("asarray")(obj);
    const std::string kind = py_text((a.attr("dtype").attr("kind")));
    const char* target = nullptr;
    if (kind == "f") {
      const std::string name = py_text((a.attr("dtype")));
      target = name == "float32" ? "float32" : "float64";
    } else if (kind == "i" || kind == "u" || kind == "b") {
      target = "int64";
    } else {
      fail(what + ": cannot convert an array of dtype " + py_text((a.attr("dtype"))) +
           " (numbers only: float32, float64 or integers)");
    }
    converted = np.attr("array")(a, nb::arg("dtype") = target, nb::arg("order") = "C", nb::arg("copy") = true);
  }
  if (!nb::cast<bool>(converted.attr("flags").attr("writeable"))) converted = converted.attr("copy")();
  nb::ndarray<> result;
  if (!nb::try_cast(converted, result, false)) fail(what + ": numpy gave an array nanobind cannot view (internal error)");
  return from_ndarray(result, what);
}

}  // namespace metatape::python
