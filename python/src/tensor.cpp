// metatape.Tensor, the ops of autograd/ops.h, and autograd (grad, backward, grad modes, hvp, scopes).
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "bindings.h"
#include "convert.h"

namespace metatape::python {
namespace {

Shape to_shape(const std::vector<std::int64_t>& dims, const char* what) {
  if (dims.size() > static_cast<std::size_t>(kernels::max_rank)) {
    fail(std::string(what) + ": shape of rank " + std::to_string(dims.size()) + " (at most " +
         std::to_string(kernels::max_rank) + ")");
  }
  Shape s;
  s.rank = static_cast<int>(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) fail(std::string(what) + ": negative dimension " + std::to_string(dims[i]) + " in the shape");
    s.dims[i] = dims[i];
  }
  return s;
}

nb::tuple shape_tuple(const Shape& s) {
  nb::list l;
  for (int i = 0; i < s.rank; ++i) l.append(s.dims[static_cast<std::size_t>(i)]);
  return nb::tuple(l);
}

bool is_scalar(nb::handle h) {
  if (PyBool_Check(h.ptr())) return false;
  if (PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr())) return true;
  // NumPy scalars and 0-d arrays (numpy.float32(2.0)): they have a dtype and ndim 0
  return nb::hasattr(h, "dtype") && nb::hasattr(h, "ndim") && nb::cast<int>(h.attr("ndim")) == 0;
}

// The other operand of a binary operator: a Tensor, a Python / NumPy scalar (a rank-0 tensor of `like`'s
// dtype), or an array-like (converted to `like`'s dtype when it is not already a Tensor).
Tensor operand(nb::handle other, const Tensor& like) {
  if (nb::isinstance<Tensor>(other)) return nb::cast<Tensor>(other);
  if (is_scalar(other)) return Tensor::scalar(nb::cast<double>(other.attr("__float__")()), like.dtype(), like.device());
  return as_tensor(other, "operand", like.dtype());
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu;
  if (text == "cuda" || text == "cuda:0") return Device::cuda;
  fail("device: '" + text + "' is not a device; use 'cpu' or 'cuda'");
}

// A context manager holding an RAII guard between __enter__ and __exit__ (on the entering thread).
template <class Guard>
struct GuardContext {
  bool enabled;
  std::unique_ptr<Guard> guard;
};

std::vector<Tensor> tensor_list(nb::handle obj, const char* what) {
  std::vector<Tensor> out;
  if (nb::isinstance<Tensor>(obj)) {
    out.push_back(nb::cast<Tensor>(obj));
    return out;
  }
  for (nb::handle h : obj) {
    if (!nb::isinstance<Tensor>(h)) {
      fail(std::string(what) + ": expected a Tensor or a sequence of Tensors, got an element of type " +
           py_text((h.type().attr("__name__"))));
    }
    out.push_back(nb::cast<Tensor>(h));
  }
  return out;
}

std::vector<Tensor> grad_impl(nb::handle outputs, nb::handle inputs, nb::handle grad_outputs, bool create_graph,
                              std::optional<bool> retain_graph, bool allow_unused) {
  GradOptions o;
  o.create_graph = create_graph;
  o.retain_graph = retain_graph;
  o.allow_unused = allow_unused;
  std::vector<Tensor> go;
  if (!grad_outputs.is_none()) go = tensor_list(grad_outputs, "grad: grad_outputs");
  return grad(tensor_list(outputs, "grad: outputs"), tensor_list(inputs, "grad: inputs"), o, go);
}

}  // namespace

void init_tensor(nb::module_& m) {
  nb::class_<Generator>(m, "Generator", "A deterministic random generator (same seed, same numbers).")
      .def(nb::init<std::uint64_t>(), nb::arg("seed") = 0x5eed, "A generator seeded with seed.")
      .def("uniform", nb::overload_cast<>(&Generator::uniform), "A number in [0, 1).")
      .def("normal", &Generator::normal, "A standard normal number.")
      .def("split", &Generator::split, "An independent generator derived from this one (one draw).");

  nb::class_<Tensor> tensor(m, "Tensor",
                            "A tensor: shared storage (CPU or CUDA), shape (rank <= 4), dtype (float32, float64, "
                            "int64) and autograd state. Copying a Tensor copies the handle, not the values.");
  tensor
      .def(
          "__init__",
          [](Tensor* self, nb::handle data, nb::handle dtype, bool requires_grad) {
            std::optional<DType> d;
            if (!dtype.is_none()) d = parse_dtype(dtype);
            Tensor t = as_tensor(data, "Tensor", d);
            if (requires_grad) t.requires_grad_(true);
            new (self) Tensor(t);
          },
          nb::arg("data"), nb::arg("dtype") = nb::none(), nb::arg("requires_grad") = false,
          "Wraps an array-like: a C-contiguous float32/float64/int64 NumPy array (or any DLPack / buffer "
          "object) is shared without a copy; anything else is converted (a copy).")
      .def_prop_ro("shape", [](const Tensor& t) { return shape_tuple(t.shape()); }, "The shape, as a tuple.")
      .def_prop_ro("ndim", &Tensor::rank, "The rank.")
      .def_prop_ro("dtype", [](const Tensor& t) { return std::string(dtype_text(t.dtype())); },
                   "'float32', 'float64' or 'int64'.")
      .def_prop_ro("device", [](const Tensor& t) { return std::string(kernels::device_name(t.device())); },
                   "'cpu' or 'cuda'.")
      .def_prop_rw(
          "name", [](const Tensor& t) { return t.name(); }, [](Tensor& t, std::string n) { t.set_name(std::move(n)); },
          "The tensor's name (used in error messages).")
      .def("numel", &Tensor::numel, "The number of elements.")
      .def("__len__",
           [](const Tensor& t) {
             if (t.rank() == 0) fail("len: a rank-0 tensor has no length");
             return t.dim(0);
           }, "The size of the first dimension.")
      .def_prop_ro("requires_grad", &Tensor::requires_grad, "Whether gradients flow to this tensor.")
      .def(
          "requires_grad_", [](Tensor& t, bool v) { return t.requires_grad_(v); }, nb::arg("requires_grad") = true,
          "Sets requires_grad in place; returns the tensor.")
      .def_prop_ro("is_leaf", &Tensor::is_leaf, "True unless a recorded op produced it.")
      .def_prop_rw(
          "grad",
          [](const Tensor& t) -> std::optional<Tensor> {
            Tensor g = t.grad();
            if (!g.defined()) return std::nullopt;
            return g;
          },
          [](Tensor& t, std::optional<Tensor> g) { t.set_grad(g ? *g : Tensor()); }, nb::arg("value").none(),
          "The gradient accumulated by backward() (None when there is none).")
      .def("zero_grad", &Tensor::zero_grad, "Clears the accumulated gradient.")
      .def(
          "backward",
          [](const Tensor& t, std::optional<Tensor> grad_output, bool create_graph) {
            t.backward(grad_output ? *grad_output : Tensor(), create_graph);
          },
          nb::arg("grad_output") = nb::none(), nb::arg("create_graph") = false,
          "Accumulates d(self)/d(leaf) into the .grad of every leaf requiring grad (self must be a scalar "
          "unless grad_output is given).")
      .def("item", &Tensor::item, "The value of a one-element tensor.")
      .def("numpy", &to_numpy, "A NumPy array sharing this tensor's memory (CPU tensors; no copy).")
      .def(
          "__array__",
          [](const Tensor& t, nb::handle dtype, nb::handle copy) -> NumpyArray {
            nb::object a = to_numpy(t);
            if (!dtype.is_none()) a = a.attr("astype")(dtype);
            if (!copy.is_none() && nb::cast<bool>(copy)) a = a.attr("copy")();
            return a;
          },
          nb::arg("dtype") = nb::none(), nb::arg("copy") = nb::none(),
          "numpy.asarray(tensor): the shared array (a converted copy when dtype or copy=True asks for one).")
      .def("tolist", [](const Tensor& t) { return nb::borrow<nb::any>(to_numpy(t).attr("tolist")()); },
           "The values as nested lists (a float for a rank-0 tensor).")
      .def(
          "__dlpack__",
          [](const Tensor& t, nb::kwargs kwargs) {
            return to_dlpack_array(t).attr("__dlpack__")(**kwargs);
          },
          "A DLPack capsule over this tensor's memory (no copy); torch.from_dlpack(t) shares it.")
      .def(
          "__dlpack_device__",
          [](const Tensor& t) {
            return nb::make_tuple(t.device() == Device::cuda ? 2 : 1, 0);
          },
          "(device type, device id) as DLPack numbers: (1, 0) CPU, (2, 0) CUDA.")
      .def("detach", &Tensor::detach, "A tensor sharing the storage, without autograd history.")
      .def("copy", &Tensor::copy, "A deep copy without autograd history.")
      .def("clone", &Tensor::copy, "A deep copy without autograd history (same as copy()).")
      .def(
          "to",
          [](const Tensor& t, const std::string& target) {
            if (target == "cpu" || target == "cuda" || target == "cuda:0") return t.to(parse_device(target));
            return t.to(parse_dtype(nb::str(target.c_str())));
          },
          nb::arg("target"), "A copy converted to a dtype ('float64', ...) or moved to a device ('cpu', 'cuda').")
      .def("assign_", [](Tensor& t, const Tensor& source) { t.assign(source); return t; }, nb::arg("source"),
           "Overwrites the values in place from a tensor of the same shape and dtype (not recorded).")
      .def("__repr__", &Tensor::str, "Shape, dtype and the values.")
      .def("__add__", [](const Tensor& a, nb::handle b) { return add(a, operand(b, a)); }, nb::is_operator())
      .def("__radd__", [](const Tensor& a, nb::handle b) { return add(operand(b, a), a); }, nb::is_operator())
      .def("__sub__", [](const Tensor& a, nb::handle b) { return sub(a, operand(b, a)); }, nb::is_operator())
      .def("__rsub__", [](const Tensor& a, nb::handle b) { return sub(operand(b, a), a); }, nb::is_operator())
      .def("__mul__", [](const Tensor& a, nb::handle b) { return mul(a, operand(b, a)); }, nb::is_operator())
      .def("__rmul__", [](const Tensor& a, nb::handle b) { return mul(operand(b, a), a); }, nb::is_operator())
      .def("__truediv__", [](const Tensor& a, nb::handle b) { return div(a, operand(b, a)); }, nb::is_operator())
      .def("__rtruediv__", [](const Tensor& a, nb::handle b) { return div(operand(b, a), a); }, nb::is_operator())
      .def("__matmul__", [](const Tensor& a, nb::handle b) { return matmul(a, operand(b, a)); }, nb::is_operator())
      .def("__rmatmul__", [](const Tensor& a, nb::handle b) { return matmul(operand(b, a), a); }, nb::is_operator())
      .def("__neg__", [](const Tensor& a) { return neg(a); })
      .def("__pow__", [](const Tensor& a, double p) { return pow(a, p); }, nb::is_operator())
      .def("__abs__", [](const Tensor& a) { return abs(a); })
      .def("sum", [](const Tensor& x, std::optional<int> axis, bool keepdim) {
             return axis ? sum(x, *axis, keepdim) : sum(x);
           }, nb::arg("axis") = nb::none(), nb::arg("keepdim") = false, "The sum over all elements or one axis.")
      .def("mean", [](const Tensor& x, std::optional<int> axis, bool keepdim) {
             return axis ? mean(x, *axis, keepdim) : mean(x);
           }, nb::arg("axis") = nb::none(), nb::arg("keepdim") = false, "The mean over all elements or one axis.")
      .def("reshape", [](const Tensor& x, const std::vector<std::int64_t>& s) { return reshape(x, to_shape(s, "reshape")); },
           nb::arg("shape"), "The same values in a new shape (shares storage).")
      .def_prop_ro("T", [](const Tensor& x) { return transpose(x); }, "The last two dimensions swapped.")
      .def("exp", [](const Tensor& x) { return exp(x); }, "e^self (metatape.exp).")
      .def("log", [](const Tensor& x) { return log(x); }, "The natural logarithm (metatape.log).")
      .def("relu", [](const Tensor& x) { return relu(x); }, "max(self, 0) (metatape.relu).")
      .def("tanh", [](const Tensor& x) { return tanh(x); }, "tanh(self) (metatape.tanh).")
      .def("sigmoid", [](const Tensor& x) { return sigmoid(x); }, "1 / (1 + e^-self) (metatape.sigmoid).");

  // ---- construction ---------------------------------------------------------------------------------
  m.def(
      "tensor",
      [](nb::handle data, nb::handle dtype, bool requires_grad) {
        std::optional<DType> d;
        if (!dtype.is_none()) d = parse_dtype(dtype);
        Tensor t = as_tensor(data, "tensor", d).copy();
        if (requires_grad) t.requires_grad_(true);
        return t;
      },
      nb::arg("data"), nb::arg("dtype") = nb::none(), nb::arg("requires_grad") = false,
      "A new tensor holding a copy of `data` (an array-like or a Tensor).");
  m.def(
      "from_numpy", [](nb::ndarray<nb::numpy> a) { return from_ndarray(nb::ndarray<>(a), "from_numpy"); },
      nb::arg("array"),
      "A tensor sharing the NumPy array's memory (no copy; C-contiguous float32, float64 or int64). Raises "
      "naming the problem otherwise.");
  m.def(
      "from_dlpack", [](nb::ndarray<> a) { return from_ndarray(a, "from_dlpack"); }, nb::arg("obj"),
      "A tensor sharing the memory of any object with __dlpack__ (torch, JAX, NumPy, CuPy; no copy).");
  m.def("zeros", [](const std::vector<std::int64_t>& s, nb::handle dtype) {
          return Tensor::zeros(to_shape(s, "zeros"), dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("shape"), nb::arg("dtype") = nb::none(), "A tensor of zeros (float32 unless dtype is given).");
  m.def("ones", [](const std::vector<std::int64_t>& s, nb::handle dtype) {
          return Tensor::ones(to_shape(s, "ones"), dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("shape"), nb::arg("dtype") = nb::none(), "A tensor of ones.");
  m.def("full", [](const std::vector<std::int64_t>& s, double v, nb::handle dtype) {
          return Tensor::full(to_shape(s, "full"), v, dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("shape"), nb::arg("value"), nb::arg("dtype") = nb::none(), "A tensor filled with value.");
  m.def("arange", [](std::int64_t n, nb::handle dtype) {
          return Tensor::arange(n, dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("n"), nb::arg("dtype") = nb::none(), "0, 1, ..., n - 1.");
  m.def("normal", [](const std::vector<std::int64_t>& s, double mean, double std, Generator& gen, nb::handle dtype) {
          return Tensor::normal(to_shape(s, "normal"), mean, std, gen, dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("shape"), nb::arg("mean"), nb::arg("std"), nb::arg("generator"), nb::arg("dtype") = nb::none(),
        "Normal random values from `generator`.");
  m.def("uniform", [](const std::vector<std::int64_t>& s, double lo, double hi, Generator& gen, nb::handle dtype) {
          return Tensor::uniform(to_shape(s, "uniform"), lo, hi, gen, dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("shape"), nb::arg("low"), nb::arg("high"), nb::arg("generator"), nb::arg("dtype") = nb::none(),
        "Uniform random values in [low, high) from `generator`.");
  m.def("indices", [](const std::vector<std::int64_t>& v) { return Tensor::indices(v); }, nb::arg("values"),
        "An int64 rank-1 tensor (class labels, row indices).");

  // ---- ops (autograd/ops.h) -------------------------------------------------------------------------
  using T = const Tensor&;
  m.def("add", [](T a, T b) { return add(a, b); }, nb::arg("a"), nb::arg("b"), "a + b (broadcasting).");
  m.def("sub", [](T a, T b) { return sub(a, b); }, nb::arg("a"), nb::arg("b"), "a - b (broadcasting).");
  m.def("mul", [](T a, T b) { return mul(a, b); }, nb::arg("a"), nb::arg("b"), "a * b (broadcasting).");
  m.def("div", [](T a, T b) { return div(a, b); }, nb::arg("a"), nb::arg("b"), "a / b (broadcasting).");
  m.def("affine", [](T x, double alpha, double beta) { return affine(x, alpha, beta); }, nb::arg("x"),
        nb::arg("alpha"), nb::arg("beta"), "alpha * x + beta.");
#define MT_UNARY(fn, doc) m.def(#fn, [](T x) { return fn(x); }, nb::arg("x"), doc)
  MT_UNARY(neg, "-x.");
  MT_UNARY(exp, "e^x.");
  MT_UNARY(log, "The natural logarithm.");
  MT_UNARY(sqrt, "The square root.");
  MT_UNARY(square, "x^2.");
  MT_UNARY(abs, "|x|.");
  MT_UNARY(relu, "max(x, 0).");
  MT_UNARY(tanh, "tanh(x).");
  MT_UNARY(sigmoid, "1 / (1 + e^-x).");
  MT_UNARY(softplus, "log(1 + e^x).");
  MT_UNARY(gelu, "GELU (tanh approximation).");
  MT_UNARY(transpose, "The last two dimensions swapped.");
  MT_UNARY(softmax, "Softmax over the last axis.");
  MT_UNARY(log_softmax, "Log-softmax over the last axis.");
#undef MT_UNARY
  m.def("pow", [](T x, double p) { return pow(x, p); }, nb::arg("x"), nb::arg("p"), "x^p.");
  m.def("leaky_relu", [](T x, double s) { return leaky_relu(x, s); }, nb::arg("x"), nb::arg("slope") = 0.01,
        "x if x > 0 else slope * x.");
  m.def("elu", [](T x, double a) { return elu(x, a); }, nb::arg("x"), nb::arg("alpha") = 1.0, "ELU.");
  m.def("clamp", [](T x, double lo, double hi) { return clamp(x, lo, hi); }, nb::arg("x"), nb::arg("lo"),
        nb::arg("hi"), "x limited to [lo, hi].");
  m.def("where", [](T mask, T a, T b) { return where(mask, a, b); }, nb::arg("mask"), nb::arg("a"), nb::arg("b"),
        "a where mask is nonzero, else b (mask: same dtype, no gradient).");
  m.def("dropout", [](T x, double p, Generator& gen, bool training) { return dropout(x, p, gen, training); },
        nb::arg("x"), nb::arg("p"), nb::arg("generator"), nb::arg("training") = true, "Inverted dropout.");
  m.def("sum", [](T x, std::optional<int> axis, bool keepdim) { return axis ? sum(x, *axis, keepdim) : sum(x); },
        nb::arg("x"), nb::arg("axis") = nb::none(), nb::arg("keepdim") = false, "Sum over all elements or one axis.");
  m.def("mean", [](T x, std::optional<int> axis, bool keepdim) { return axis ? mean(x, *axis, keepdim) : mean(x); },
        nb::arg("x"), nb::arg("axis") = nb::none(), nb::arg("keepdim") = false, "Mean over all elements or one axis.");
  m.def("max", [](T x, int axis, bool keepdim) { return max(x, axis, keepdim); }, nb::arg("x"), nb::arg("axis"),
        nb::arg("keepdim") = false, "Maximum along an axis (gradient to the first maximum).");
  m.def("sum_to", [](T x, const std::vector<std::int64_t>& s) { return sum_to(x, to_shape(s, "sum_to")); },
        nb::arg("x"), nb::arg("shape"), "Sums x down to a shape that broadcasts to x's.");
  m.def("expand", [](T x, const std::vector<std::int64_t>& s) { return expand(x, to_shape(s, "expand")); },
        nb::arg("x"), nb::arg("shape"), "Broadcasts x to shape.");
  m.def("gemm", [](T a, bool ta, T b, bool tb) { return gemm(a, ta, b, tb); }, nb::arg("a"), nb::arg("trans_a"),
        nb::arg("b"), nb::arg("trans_b"), "op(a) @ op(b) over the last two dims (rank 2 or 3).");
  m.def("matmul", [](T a, T b) { return matmul(a, b); }, nb::arg("a"), nb::arg("b"), "a @ b.");
  m.def("linear", [](T x, T w, std::optional<Tensor> b) { return linear(x, w, b ? *b : Tensor()); }, nb::arg("x"),
        nb::arg("weight"), nb::arg("bias") = nb::none(), "x @ weight.T + bias as one op.");
  m.def("pairwise_sqdist", [](T a, T b) { return pairwise_sqdist(a, b); }, nb::arg("a"), nb::arg("b"),
        "out[i, j] = |a_i - b_j|^2.");
  m.def("cosine_similarity", [](T a, T b, double eps) { return cosine_similarity(a, b, eps); }, nb::arg("a"),
        nb::arg("b"), nb::arg("eps") = 1e-12, "out[i, j] = <a_i, b_j> / (|a_i| |b_j|).");
  m.def("reshape", [](T x, const std::vector<std::int64_t>& s) { return reshape(x, to_shape(s, "reshape")); },
        nb::arg("x"), nb::arg("shape"), "The same values in a new shape (shares storage).");
  m.def("concat", [](const std::vector<Tensor>& parts, int axis) { return concat(parts, axis); }, nb::arg("parts"),
        nb::arg("axis") = 0, "Concatenation along an axis.");
  m.def("slice", [](T x, int axis, std::int64_t start, std::int64_t end) { return slice(x, axis, start, end); },
        nb::arg("x"), nb::arg("axis"), nb::arg("start"), nb::arg("end"), "x[start:end] along an axis.");
  m.def("index_select", [](T x, T index) { return index_select(x, index); }, nb::arg("x"), nb::arg("index"),
        "Rows of axis 0 (index: int64).");
  m.def("index_add", [](T src, T index, std::int64_t rows) { return index_add(src, index, rows); }, nb::arg("src"),
        nb::arg("index"), nb::arg("rows"), "The adjoint of index_select.");
  m.def("pad_axis", [](T x, const std::vector<std::int64_t>& full, int axis, std::int64_t start) {
          return pad_axis(x, to_shape(full, "pad_axis"), axis, start);
        }, nb::arg("x"), nb::arg("full"), nb::arg("axis"), nb::arg("start"), "The adjoint of slice.");
  m.def("cross_entropy", [](T logits, T labels) { return cross_entropy(logits, labels); }, nb::arg("logits"),
        nb::arg("labels"), "Mean cross-entropy of logits (rows, classes) against int64 labels (rows).");
  m.def("nll", [](T lp, T labels) { return nll(lp, labels); }, nb::arg("log_probs"), nb::arg("labels"),
        "Mean negative log-likelihood.");
  m.def("mse", [](T p, T t) { return mse(p, t); }, nb::arg("prediction"), nb::arg("target"), "Mean squared error.");
  m.def("one_hot", [](T labels, std::int64_t classes, nb::handle dtype) {
          return one_hot(labels, classes, dtype.is_none() ? DType::f32 : parse_dtype(dtype));
        }, nb::arg("labels"), nb::arg("classes"), nb::arg("dtype") = nb::none(), "One-hot rows (not differentiable).");
  m.def("argmax", [](T x, int axis) { return argmax(x, axis); }, nb::arg("x"), nb::arg("axis"),
        "Indices of the maxima (int64; not differentiable).");
  m.def("greater", [](T a, T b) { return greater(a, b); }, nb::arg("a"), nb::arg("b"),
        "1 where a > b else 0 (not differentiable).");

  // ---- autograd -------------------------------------------------------------------------------------
  m.def("grad", &grad_impl, nb::arg("outputs"), nb::arg("inputs"), nb::arg("grad_outputs") = nb::none(),
        nb::arg("create_graph") = false, nb::arg("retain_graph") = nb::none(), nb::arg("allow_unused") = false,
        "d(sum_k <grad_outputs[k], outputs[k]>)/d(inputs[j]) for every input j, as a list. create_graph records "
        "the backward so it can be differentiated again; retain_graph (default: create_graph) keeps the graph "
        "for another pass; allow_unused gives zeros (not an error) for an input the outputs do not reach.");
  m.def(
      "backward",
      [](T output, std::optional<Tensor> grad_output, bool create_graph) {
        backward(output, grad_output ? *grad_output : Tensor(), create_graph);
      },
      nb::arg("output"), nb::arg("grad_output") = nb::none(), nb::arg("create_graph") = false,
      "Accumulates into .grad of every leaf requiring grad reached from output.");
  m.def(
      "hvp",
      [](nb::handle f_or_output, nb::handle inputs, nb::handle vectors) {
        std::vector<Tensor> in = tensor_list(inputs, "hvp: inputs");
        Tensor out;
        if (PyCallable_Check(f_or_output.ptr()) && !nb::isinstance<Tensor>(f_or_output)) {
          nb::object r = nb::borrow(f_or_output)(*nb::cast(in));
          out = nb::cast<Tensor>(r);
        } else {
          out = nb::cast<Tensor>(f_or_output);
        }
        std::vector<Tensor> v = tensor_list(vectors, "hvp: vectors");
        if (v.size() != in.size()) {
          fail("hvp: " + std::to_string(v.size()) + " vectors for " + std::to_string(in.size()) +
               " inputs; give one vector per input, of the input's shape");
        }
        GradOptions first;
        first.create_graph = true;
        first.allow_unused = true;
        std::vector<Tensor> g = grad({out}, in, first);
        GradOptions second;
        second.allow_unused = true;
        return grad(g, in, second, v);
      },
      nb::arg("f"), nb::arg("inputs"), nb::arg("vectors"),
      "Hessian-vector products H v of a scalar: f is the scalar Tensor (recorded from inputs) or a callable "
      "f(*inputs) returning it; one vector per input. Exact (double backward).");

  using GradCtx = GuardContext<GradModeGuard>;
  nb::class_<GradCtx>(m, "GradMode", "Context manager that sets grad mode on this thread (no_grad, enable_grad).")
      .def("__enter__", [](GradCtx& c) { c.guard = std::make_unique<GradModeGuard>(c.enabled); return nb::none(); })
      .def("__exit__", [](GradCtx& c, nb::args) { c.guard.reset(); return false; });
  using AnomalyCtx = GuardContext<DetectAnomalyGuard>;
  nb::class_<AnomalyCtx>(m, "DetectAnomaly", "Context manager for anomaly detection on this thread.")
      .def("__enter__", [](AnomalyCtx& c) { c.guard = std::make_unique<DetectAnomalyGuard>(c.enabled); return nb::none(); })
      .def("__exit__", [](AnomalyCtx& c, nb::args) { c.guard.reset(); return false; });
  m.def("no_grad", [] { return GradCtx{false, nullptr}; },
        "with metatape.no_grad(): nothing inside is recorded on this thread's tape.");
  m.def("enable_grad", [] { return GradCtx{true, nullptr}; }, "with metatape.enable_grad(): recording on.");
  m.def("detect_anomaly", [](bool enabled) { return AnomalyCtx{enabled, nullptr}; }, nb::arg("enabled") = true,
        "with metatape.detect_anomaly(): every recorded op's output and gradient is checked for NaN/Inf and "
        "the first offending op is named in the exception (slow: a debugging mode).");
  m.def("is_grad_enabled", &grad_enabled, "Whether ops are recorded on this thread.");
  m.def("tape_size", &tape_size, nb::arg("compact") = false, "Nodes alive on this thread's tape.");

  struct Scope {
    std::optional<TapeMark> mark;
  };
  nb::class_<Scope>(m, "TapeScope",
                    "with metatape.scope(): releases everything recorded inside on exit (values stay valid, "
                    "gradients can no longer flow through them).")
      .def("__enter__", [](Scope& s) { s.mark = tape_mark(); return nb::none(); })
      .def("__exit__", [](Scope& s, nb::args) {
        if (s.mark) release_since(*s.mark);
        s.mark.reset();
        return false;
      });
  m.def("scope", [] { return Scope{}; }, "A TapeScope context manager.");
}

}  // namespace metatape::python
