// The extension module metatape._metatape; the Python package metatape re-exports it.
#include <nanobind/nanobind.h>

#include "bindings.h"
#include "kernels/error.h"

NB_MODULE(_metatape, m) {
  m.doc() = "metatape: tape-based autodiff with exact higher-order gradients and few-shot meta-learning.";
  // metatape::Error -> metatape.Error (a RuntimeError) carrying the C++ message.
  static nb::exception<metatape::Error> error(m, "Error", PyExc_RuntimeError);
  error.attr("__doc__") = "An error from the C++ library; the message names the problem and the fix.";
  nb::module_ nn_module = m.def_submodule("nn", "Models: MLP.");
  nb::module_ optim = m.def_submodule("optim", "Optimizers: SGD, Adam, AdamW.");
  nb::module_ tasks_module = m.def_submodule("tasks", "Few-shot tasks: sinusoids, the market simulator, task families.");
  metatape::python::init_tensor(m);
  metatape::python::init_tasks(m, tasks_module);
  metatape::python::init_learners(m, nn_module, optim);
  nb::module_ evaluate = m.def_submodule("evaluate", "The few-shot benchmark harness, returning plain dicts.");
  metatape::python::init_evaluate(evaluate);
  // A function, not a constant: the stubs must not depend on the build.
  m.def("cuda_built", [] {
#ifdef METATAPE_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether this build has the CUDA backend (tensors can then move with t.to('cuda')).");
}
