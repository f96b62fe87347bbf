// metatape.nn (MLP), metatape.optim (optimizers), the learners and checkpoints, and InferenceModel
// (a `metatape train` checkpoint loaded for adaptation, the C API's core).
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "bindings.h"
#include "capi/inference_model.h"
#include "convert.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/checkpoint.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"

namespace metatape::python {
namespace {

struct PyMlp {
  std::shared_ptr<nn::Mlp> mlp;
  nn::ParameterList params;
};

struct PyOptimizer {
  std::string kind;
  nn::OptimizerOptions options;
  std::unique_ptr<nn::Optimizer> optimizer;
};

PyOptimizer make_py_optimizer(std::string kind, nn::OptimizerOptions o) {
  PyOptimizer p{kind, o, nullptr};
  p.optimizer = nn::make_optimizer(kind, o);
  return p;
}

nn::OptimizerOptions optimizer_options(double lr, double momentum, bool nesterov, std::pair<double, double> betas,
                                       double eps, double weight_decay, double clip_norm) {
  nn::OptimizerOptions o;
  o.lr = lr;
  o.momentum = momentum;
  o.nesterov = nesterov;
  o.beta1 = betas.first;
  o.beta2 = betas.second;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.clip_norm = clip_norm;
  return o;
}

// The tensors of a parameter argument: a dict name -> Tensor/array (in the list's order, every name
// present), a list/tuple of Tensors, or None (the model's own parameters).
nn::ParameterList parameter_argument(const nn::ParameterList& layout, nb::handle params, const char* what) {
  if (params.is_none()) return layout;
  std::vector<Tensor> tensors;
  if (nb::isinstance<nb::dict>(params)) {
    nb::dict d = nb::borrow<nb::dict>(params);
    for (std::size_t i = 0; i < layout.size(); ++i) {
      nb::str key(layout.name(i).c_str());
      if (!d.contains(key)) fail(std::string(what) + ": the parameter dict has no entry '" + layout.name(i) + "'");
      tensors.push_back(as_tensor(d[key], std::string(what) + " '" + layout.name(i) + "'", layout[i].dtype()));
    }
  } else {
    for (nb::handle h : params) tensors.push_back(as_tensor(h, what, std::nullopt));
  }
  return layout.with_tensors(std::move(tensors));
}

ArrayDict numpy_dict(const nn::ParameterList& params) {
  ArrayDict d;
  for (std::size_t i = 0; i < params.size(); ++i) d[params.name(i).c_str()] = to_numpy(params[i]);
  return d;
}

nb::typed<nb::dict, nb::str, Tensor> tensor_dict(const nn::ParameterList& params) {
  nb::typed<nb::dict, nb::str, Tensor> d;
  for (std::size_t i = 0; i < params.size(); ++i) d[params.name(i).c_str()] = nb::cast(params[i]);
  return d;
}

MetricsDict metrics_dict(const meta::StepMetrics& m) {
  MetricsDict d;
  d["computed"] = m.computed;
  d["query_loss"] = m.query_loss;
  d["support_loss"] = m.support_loss;
  d["query_accuracy"] = m.query_accuracy ? nb::cast(*m.query_accuracy) : nb::none();
  d["grad_norm"] = m.grad_norm;
  d["step"] = m.step;
  return d;
}

const char* kind_text(tasks::TaskKind k) {
  switch (k) {
    case tasks::TaskKind::classification:
      return "classification";
    case tasks::TaskKind::regression:
      return "regression";
    case tasks::TaskKind::portfolio:
      return "portfolio";
  }
  return "?";
}

// A learner with its model and the last adapted parameters. Calls that run C++ work release the GIL
// and take `mutex` (one call at a time per learner; other learners and Python threads run freely).
struct PyLearner {
  std::shared_ptr<nn::Mlp> mlp;
  std::unique_ptr<meta::Learner> learner;
  std::optional<nn::ParameterList> last_adapted;
  std::optional<tasks::TaskKind> trained_kind;
  std::int64_t trained_classes = 0;
  std::unique_ptr<std::mutex> mutex = std::make_unique<std::mutex>();
};

struct PyAdapted {
  nn::ParameterList params;
  std::shared_ptr<nn::Mlp> mlp;
};

tasks::TaskBatch batch_argument(nb::handle batch) {
  tasks::TaskBatch b;
  if (nb::isinstance<tasks::Task>(batch)) {
    b.push_back(nb::cast<tasks::Task>(batch));
    return b;
  }
  for (nb::handle h : batch) {
    if (!nb::isinstance<tasks::Task>(h)) {
      fail("batch: expected a list of metatape.tasks.Task, got an element of type " +
           py_text((h.type().attr("__name__"))) +
           " (build one with metatape.tasks.Task(support_x, support_y, query_x, query_y))");
    }
    b.push_back(nb::cast<tasks::Task>(h));
  }
  if (b.empty()) fail("batch: the batch is empty; give at least one task");
  return b;
}

// The support-only task that adapt() sees. Classification when y is int64 (num_classes 0: the
// model's output size for gradient learners, one more than the largest label for metric learners).
tasks::Task support_task(const PyLearner& l, nb::handle x, nb::handle y, std::optional<std::string> kind,
                         std::int64_t num_classes) {
  tasks::Task t;
  t.support_x = as_tensor(x, "adapt: support_x", l.mlp->dtype());
  Tensor yt = as_tensor(y, "adapt: support_y", std::nullopt);
  tasks::TaskKind k = yt.dtype() == DType::i64 ? tasks::TaskKind::classification : tasks::TaskKind::regression;
  if (kind) k = parse_task_kind(*kind);
  if (k == tasks::TaskKind::classification) {
    if (yt.dtype() != DType::i64) yt = yt.to(DType::i64);
    if (yt.rank() == 2 && yt.dim(1) == 1) yt = reshape(yt, Shape{yt.dim(0)});
    if (num_classes <= 0) {
      if (meta::is_metric_learner(l.learner->name())) {
        std::int64_t top = -1;
        for (std::int64_t v : yt.to_vector<std::int64_t>()) top = std::max(top, v);
        num_classes = top + 1;
      } else {
        num_classes = l.mlp->out_features();
      }
    }
  } else if (yt.dtype() != l.mlp->dtype()) {
    yt = yt.to(l.mlp->dtype());
  }
  if (k != tasks::TaskKind::classification && yt.rank() == 1) yt = reshape(yt, Shape{yt.dim(0), 1});
  t.support_y = yt;
  t.query_x = t.support_x;
  t.query_y = t.support_y;
  t.kind = k;
  t.num_classes = k == tasks::TaskKind::classification ? num_classes : 0;
  return t;
}

PyLearner build(const std::string& what, PyMlp& model, nb::handle optimizer,
                const std::function<std::unique_ptr<meta::Learner>(std::shared_ptr<const nn::Model>,
                                                                   nn::ParameterList,
                                                                   std::unique_ptr<nn::Optimizer>)>& make) {
  if (!model.mlp) fail(what + ": no model given (pass metatape.nn.MLP([...]))");
  std::unique_ptr<nn::Optimizer> outer;
  if (optimizer.is_none()) {
    nn::OptimizerOptions o;
    o.lr = 1e-3;
    outer = nn::make_adam(o);
  } else if (nb::isinstance<nb::str>(optimizer)) {
    outer = nn::make_optimizer(py_text(optimizer), nn::OptimizerOptions{});
  } else {
    const PyOptimizer& p = nb::cast<const PyOptimizer&>(optimizer);
    outer = nn::make_optimizer(p.kind, p.options);
  }
  PyLearner l;
  l.mlp = model.mlp;
  l.learner = make(model.mlp, model.params, std::move(outer));
  return l;
}

}  // namespace

tasks::TaskKind parse_task_kind(const std::string& text) {
  if (text == "classification") return tasks::TaskKind::classification;
  if (text == "regression") return tasks::TaskKind::regression;
  if (text == "portfolio") return tasks::TaskKind::portfolio;
  fail("task kind: '" + text + "' is not a kind; use 'classification', 'regression' or 'portfolio'");
}

const char* task_kind_text(tasks::TaskKind k) { return kind_text(k); }

void init_learners(nb::module_& m, nb::module_& nn_module, nb::module_& optim) {
  // ---- nn -------------------------------------------------------------------------------------------
  nb::class_<PyMlp>(nn_module, "MLP",
                    "A multi-layer perceptron: sizes [in, hidden..., out], the activation after every layer but the "
                    "last. Parameters 'layer<i>.weight' (out, in) and 'layer<i>.bias' (out).")
      .def(
          "__init__",
          [](PyMlp* self, const std::vector<std::int64_t>& sizes, const std::string& activation, nb::handle dtype,
             std::uint64_t seed, const std::string& init) {
            nn::MlpSpec spec;
            spec.sizes = sizes;
            spec.activation = nn::parse_activation(activation);
            spec.dtype = dtype.is_none() ? DType::f32 : parse_dtype(dtype);
            spec.init = nn::parse_init(init);
            auto mlp = std::make_shared<nn::Mlp>(spec);
            Generator gen(seed);
            new (self) PyMlp{mlp, mlp->init(gen)};
          },
          nb::arg("sizes"), nb::arg("activation") = "relu", nb::arg("dtype") = nb::none(), nb::arg("seed") = 0,
          nb::arg("init") = "uniform_fan_in",
          "sizes: [in, hidden..., out]; activation: relu, tanh, sigmoid, gelu, leaky_relu, elu or none; dtype: "
          "'float32' (default) or 'float64'; parameters drawn from Generator(seed) with `init` (uniform_fan_in "
          "is PyTorch's Linear default).")
      .def("parameters", [](const PyMlp& p) { return numpy_dict(p.params); },
           "Name -> NumPy array sharing the parameter's memory (writes change the model; a learner built on this "
           "model trains these very arrays).")
      .def("named_tensors", [](const PyMlp& p) { return tensor_dict(p.params); },
           "Name -> Tensor (the leaves, requiring grad).")
      .def("tensors", [](const PyMlp& p) { return p.params.tensors(); }, "The parameter Tensors in order.")
      .def("names", [](const PyMlp& p) { return p.params.names(); }, "The parameter names in order.")
      .def(
          "load_parameters",
          [](PyMlp& p, nb::handle params) { p.params.assign(parameter_argument(p.params, params, "load_parameters")); },
          nb::arg("params"), "Copies values in (a dict name -> array or a list in order).")
      .def(
          "forward",
          [](const PyMlp& p, nb::handle x, nb::handle params) {
            return p.mlp->forward(parameter_argument(p.params, params, "forward: params"),
                                  as_tensor(x, "forward: x", p.mlp->dtype()));
          },
          nb::arg("x"), nb::arg("params") = nb::none(),
          "The output (rows, out) as a Tensor, differentiable; params: other tensors (e.g. adapted) for the same "
          "names, as a dict or a list in order.")
      .def(
          "__call__",
          [](const PyMlp& p, nb::handle x, nb::handle params) {
            return p.mlp->forward(parameter_argument(p.params, params, "forward: params"),
                                  as_tensor(x, "forward: x", p.mlp->dtype()));
          },
          nb::arg("x"), nb::arg("params") = nb::none())
      .def_prop_ro("in_features", [](const PyMlp& p) { return p.mlp->in_features(); }, "Input width.")
      .def_prop_ro("out_features", [](const PyMlp& p) { return p.mlp->out_features(); }, "Output width.")
      .def_prop_ro("dtype", [](const PyMlp& p) { return std::string(dtype_text(p.mlp->dtype())); },
                   "'float32' or 'float64'.")
      .def("describe", [](const PyMlp& p) { return p.mlp->describe(); }, "e.g. 'mlp 1-40-40-1 relu f32'.")
      .def("__repr__", [](const PyMlp& p) { return "<metatape.nn.MLP " + p.mlp->describe() + ">"; });

  // ---- optim ----------------------------------------------------------------------------------------
  nb::class_<PyOptimizer>(optim, "Optimizer",
                          "An optimizer (SGD, Adam, AdamW). Given to a learner, the learner gets a fresh optimizer "
                          "with these options; step() updates tensors in place.")
      .def_prop_ro("kind", [](const PyOptimizer& o) { return o.kind; }, "'sgd', 'adam' or 'adamw'.")
      .def_prop_ro("lr", [](const PyOptimizer& o) { return o.optimizer->current_lr(); },
                   "The learning rate of the next update.")
      .def_prop_ro("steps_taken", [](const PyOptimizer& o) { return o.optimizer->steps_taken(); },
                   "Updates applied by step().")
      .def(
          "step",
          [](PyOptimizer& o, nb::handle params, nb::handle grads) {
            nn::ParameterList list;
            std::vector<Tensor> ps;
            if (nb::isinstance<PyMlp>(params)) {
              list = nb::cast<PyMlp&>(params).params;
            } else {
              int i = 0;
              for (nb::handle h : params) list.add("p" + std::to_string(i++), nb::cast<Tensor>(h));
            }
            std::vector<Tensor> gs;
            for (nb::handle h : grads) gs.push_back(h.is_none() ? Tensor() : nb::cast<Tensor>(h));
            return o.optimizer->step(list, gs);
          },
          nb::arg("params"), nb::arg("grads"),
          "Applies one update to params (an MLP or a list of Tensors) from grads (same order); returns True when "
          "an update was applied (gradient accumulation may defer it).");
  optim.def(
      "SGD",
      [](double lr, double momentum, bool nesterov, double weight_decay, double clip_norm) {
        return make_py_optimizer("sgd", optimizer_options(lr, momentum, nesterov, {0.9, 0.999}, 1e-8, weight_decay, clip_norm));
      },
      nb::arg("lr") = 1e-3, nb::arg("momentum") = 0.0, nb::arg("nesterov") = false, nb::arg("weight_decay") = 0.0,
      nb::arg("clip_norm") = 0.0, "SGD with optional momentum / Nesterov, L2 and clipping by global norm.");
  optim.def(
      "Adam",
      [](double lr, std::pair<double, double> betas, double eps, double weight_decay, double clip_norm) {
        return make_py_optimizer("adam", optimizer_options(lr, 0, false, betas, eps, weight_decay, clip_norm));
      },
      nb::arg("lr") = 1e-3, nb::arg("betas") = std::pair<double, double>{0.9, 0.999}, nb::arg("eps") = 1e-8,
      nb::arg("weight_decay") = 0.0, nb::arg("clip_norm") = 0.0, "Adam.");
  optim.def(
      "AdamW",
      [](double lr, std::pair<double, double> betas, double eps, double weight_decay, double clip_norm) {
        return make_py_optimizer("adamw", optimizer_options(lr, 0, false, betas, eps, weight_decay, clip_norm));
      },
      nb::arg("lr") = 1e-3, nb::arg("betas") = std::pair<double, double>{0.9, 0.999}, nb::arg("eps") = 1e-8,
      nb::arg("weight_decay") = 0.01, nb::arg("clip_norm") = 0.0, "AdamW (decoupled weight decay).");

  // ---- learners -------------------------------------------------------------------------------------
  nb::class_<PyAdapted>(m, "Adapted", "A model adapted to one support set (no autograd history).")
      .def("parameters", [](const PyAdapted& a) { return numpy_dict(a.params); }, "Name -> NumPy array.")
      .def("named_tensors", [](const PyAdapted& a) { return tensor_dict(a.params); }, "Name -> Tensor.");

  nb::class_<PyLearner>(m, "Learner",
                        "A meta-learner (MAML, MetaSGD, Reptile, ANIL, ProtoNet, MatchingNet). It trains the "
                        "model's own parameter arrays in place. Calls release the GIL.")
      .def_prop_ro("name", [](const PyLearner& l) { return l.learner->name(); }, "'maml', 'fomaml', 'maml++', ...")
      .def_prop_ro("meta_steps", [](const PyLearner& l) { return l.learner->meta_steps(); },
                   "Meta-steps completed (restored by load()).")
      .def_prop_ro("default_adapt_steps", [](const PyLearner& l) { return l.learner->default_adapt_steps(); },
                   "The inner steps adapt() uses when steps < 0 (0 for metric learners).")
      .def("config", [](const PyLearner& l) { return l.learner->config_json(); }, "The options as JSON text.")
      .def("meta_parameters", [](PyLearner& l) { return numpy_dict(l.learner->meta_parameters()); },
           "Name -> NumPy view of everything the outer optimizer updates (the model's parameters first, then "
           "learned inner rates or alphas).")
      .def(
          "meta_train_step",
          [](PyLearner& l, nb::handle batch, bool metrics) {
            tasks::TaskBatch b = batch_argument(batch);
            meta::StepOptions o;
            o.metrics = metrics;
            meta::StepMetrics r;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*l.mutex);
              r = l.learner->meta_train_step(b, o);
            }
            l.trained_kind = b.front().kind;
            l.trained_classes = b.front().num_classes;
            return metrics_dict(r);
          },
          nb::arg("batch"), nb::arg("metrics") = true,
          "One outer update from a list of Tasks; returns the metrics dict (query_loss, support_loss, "
          "query_accuracy, grad_norm, step).")
      .def(
          "meta_gradient",
          [](PyLearner& l, nb::handle batch, bool metrics) {
            tasks::TaskBatch b = batch_argument(batch);
            meta::StepOptions o;
            o.metrics = metrics;
            meta::MetaGradient g;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*l.mutex);
              g = l.learner->meta_gradient(b, o);
            }
            ArrayDict grads;
            const nn::ParameterList& mp = l.learner->meta_parameters();
            for (std::size_t i = 0; i < mp.size(); ++i) grads[mp.name(i).c_str()] = to_numpy(g.grads[i]);
            return std::make_pair(grads, metrics_dict(g.metrics));
          },
          nb::arg("batch"), nb::arg("metrics") = true,
          "The outer gradient of one meta-step, not applied: (name -> NumPy array, metrics dict).")
      .def(
          "adapt",
          [](PyLearner& l, nb::handle x, nb::handle y, int steps, std::optional<std::string> kind,
             std::int64_t num_classes) {
            tasks::Task t = support_task(l, x, y, kind, num_classes);
            nn::ParameterList out;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*l.mutex);
              out = l.learner->adapt(t, steps);
            }
            l.last_adapted = out;
            return PyAdapted{out, l.mlp};
          },
          nb::arg("support_x"), nb::arg("support_y"), nb::arg("steps") = -1, nb::arg("kind") = nb::none(),
          nb::arg("num_classes") = 0,
          "Adapts to a support set (int64 labels: classification; floats: regression, or kind='portfolio'); "
          "steps < 0: the learner's default. Returns the Adapted model and remembers it for predict().")
      .def(
          "predict",
          [](PyLearner& l, nb::handle x, std::optional<PyAdapted*> adapted) {
            const nn::ParameterList* p = nullptr;
            if (adapted && *adapted) {
              p = &(*adapted)->params;
            } else if (l.last_adapted) {
              p = &*l.last_adapted;
            } else {
              fail("predict: nothing adapted yet; call learner.adapt(support_x, support_y) first or pass adapted=");
            }
            Tensor xt = as_tensor(x, "predict: x", l.mlp->dtype());
            Tensor out;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*l.mutex);
              NoGradGuard no_grad;
              out = l.learner->predict(*p, xt);
            }
            return to_numpy(out);
          },
          nb::arg("x"), nb::arg("adapted") = nb::none(),
          "The adapted model's outputs on x as a NumPy array: regression outputs, classification logits "
          "(log-probabilities for MatchingNet), portfolio scores.")
      .def(
          "evaluate",
          [](PyLearner& l, const tasks::Task& task, const std::vector<int>& steps) {
            std::vector<meta::Evaluation> ev;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*l.mutex);
              ev = l.learner->evaluate(task, steps);
            }
            nb::typed<nb::list, MetricsDict> out;
            for (const auto& e : ev) {
              MetricsDict d;
              d["steps"] = e.steps;
              d["loss"] = e.loss;
              d["accuracy"] = e.accuracy ? nb::cast(*e.accuracy) : nb::none();
              out.append(d);
            }
            return out;
          },
          nb::arg("task"), nb::arg("steps"),
          "Adapts on the task's support set with each number of steps and scores the query set: a list of "
          "{'steps', 'loss', 'accuracy'} dicts.")
      .def(
          "save",
          [](PyLearner& l, const std::string& path) {
            // Not "model": InferenceModel reads the learner options from the first object holding one
            // (the options object already does).
            nlohmann::json extra = nlohmann::json::object();
            if (l.trained_kind) {
              extra["task_kind"] = kind_text(*l.trained_kind);
              if (*l.trained_kind == tasks::TaskKind::classification) extra["num_classes"] = l.trained_classes;
            }
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(*l.mutex);
            meta::save_learner(path, *l.learner, nullptr, extra.dump());
          },
          nb::arg("path"),
          "Writes a checkpoint (meta-parameters, optimizer state, step, options; loadable by load() and by "
          "metatape.InferenceModel / the C API).")
      .def(
          "load",
          [](PyLearner& l, const std::string& path) {
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(*l.mutex);
            meta::load_learner(path, *l.learner);
          },
          nb::arg("path"),
          "Restores a checkpoint written by the same learner kind with the same parameter layout.")
      .def("__repr__", [](const PyLearner& l) {
        return "<metatape.Learner " + l.learner->name() + " on " + l.mlp->describe() + ", " +
               std::to_string(l.learner->meta_steps()) + " meta-steps>";
      });

  m.def(
      "MAML",
      [](PyMlp& model, double lr, bool first_order, int steps, nb::handle optimizer, bool multi_step_loss,
         std::int64_t msl_anneal_steps, bool learn_inner_lrs, std::int64_t first_order_until, bool recompute_inner,
         bool fused) {
        meta::MamlOptions o;
        o.inner_lr = lr;
        o.first_order = first_order;
        o.inner_steps = steps;
        o.multi_step_loss = multi_step_loss;
        o.msl_anneal_steps = msl_anneal_steps;
        o.learn_inner_lrs = learn_inner_lrs;
        o.first_order_until = first_order_until;
        o.recompute_inner = recompute_inner;
        o.fused = fused;
        return build("MAML", model, optimizer, [&](auto mdl, auto init, auto outer) {
          return meta::make_maml(mdl, init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("lr") = 0.01, nb::arg("first_order") = false, nb::arg("steps") = 1,
      nb::arg("optimizer") = nb::none(), nb::arg("multi_step_loss") = false, nb::arg("msl_anneal_steps") = 1000,
      nb::arg("learn_inner_lrs") = false, nb::arg("first_order_until") = 0, nb::arg("recompute_inner") = false,
      nb::arg("fused") = true,
      "MAML (second order unless first_order) with the MAML++ options multi_step_loss, learn_inner_lrs and "
      "first_order_until. lr: inner learning rate; steps: inner steps; optimizer: the outer optimizer "
      "(default metatape.optim.Adam(lr=1e-3)).");
  m.def(
      "MetaSGD",
      [](PyMlp& model, double alpha_init, int steps, double alpha_l2, bool first_order, nb::handle optimizer,
         bool recompute_inner, bool fused) {
        meta::MetaSgdOptions o;
        o.alpha_init = alpha_init;
        o.inner_steps = steps;
        o.alpha_l2 = alpha_l2;
        o.first_order = first_order;
        o.recompute_inner = recompute_inner;
        o.fused = fused;
        return build("MetaSGD", model, optimizer, [&](auto mdl, auto init, auto outer) {
          return meta::make_meta_sgd(mdl, init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("lr") = 0.01, nb::arg("steps") = 1, nb::arg("alpha_l2") = 0.0,
      nb::arg("first_order") = false, nb::arg("optimizer") = nb::none(), nb::arg("recompute_inner") = false,
      nb::arg("fused") = true, "Meta-SGD: learned per-parameter inner rates, initialised to lr.");
  m.def(
      "Reptile",
      [](PyMlp& model, double lr, int steps, double epsilon, std::int64_t decay_steps, bool inner_adam,
         bool use_query_in_inner, nb::handle optimizer) {
        meta::ReptileOptions o;
        o.inner_lr = lr;
        o.inner_steps = steps;
        o.epsilon = epsilon;
        o.decay_steps = decay_steps;
        o.inner_adam = inner_adam;
        o.use_query_in_inner = use_query_in_inner;
        nb::object opt = optimizer.is_none() ? nb::cast(make_py_optimizer("sgd", optimizer_options(epsilon, 0, false, {0.9, 0.999}, 1e-8, 0, 0)))
                                             : nb::borrow(optimizer);
        return build("Reptile", model, opt, [&](auto mdl, auto init, auto outer) {
          return meta::make_reptile(mdl, init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("lr") = 0.01, nb::arg("steps") = 5, nb::arg("epsilon") = 1.0,
      nb::arg("decay_steps") = 0, nb::arg("inner_adam") = false, nb::arg("use_query_in_inner") = false,
      nb::arg("optimizer") = nb::none(),
      "Reptile: k inner steps, then theta += epsilon_t (mean phi - theta) (outer optimizer default: SGD).");
  m.def(
      "ANIL",
      [](PyMlp& model, double lr, int steps, bool first_order, nb::handle optimizer, bool recompute_inner, bool fused) {
        meta::AnilOptions o;
        o.inner_lr = lr;
        o.inner_steps = steps;
        o.first_order = first_order;
        o.recompute_inner = recompute_inner;
        o.fused = fused;
        return build("ANIL", model, optimizer, [&](auto mdl, auto init, auto outer) {
          return meta::make_anil(std::dynamic_pointer_cast<const nn::Mlp>(mdl), init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("lr") = 0.01, nb::arg("steps") = 1, nb::arg("first_order") = false,
      nb::arg("optimizer") = nb::none(), nb::arg("recompute_inner") = false, nb::arg("fused") = true,
      "ANIL: only the last layer adapts in the inner loop.");
  m.def(
      "ProtoNet",
      [](PyMlp& model, const std::string& distance, double cosine_scale, nb::handle optimizer) {
        meta::ProtoOptions o;
        if (distance == "sqeuclidean") {
          o.distance = meta::ProtoOptions::Distance::sqeuclidean;
        } else if (distance == "cosine") {
          o.distance = meta::ProtoOptions::Distance::cosine;
        } else {
          fail("ProtoNet: distance '" + distance + "' is not one; use 'sqeuclidean' or 'cosine'");
        }
        o.cosine_scale = cosine_scale;
        return build("ProtoNet", model, optimizer, [&](auto mdl, auto init, auto outer) {
          return meta::make_protonet(mdl, init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("distance") = "sqeuclidean", nb::arg("cosine_scale") = 10.0,
      nb::arg("optimizer") = nb::none(), "Prototypical Networks (the model is the embedding).");
  m.def(
      "MatchingNet",
      [](PyMlp& model, double cosine_scale, nb::handle optimizer) {
        meta::MatchingOptions o;
        o.cosine_scale = cosine_scale;
        return build("MatchingNet", model, optimizer, [&](auto mdl, auto init, auto outer) {
          return meta::make_matching(mdl, init, std::move(outer), o);
        });
      },
      nb::arg("model"), nb::arg("cosine_scale") = 1.0, nb::arg("optimizer") = nb::none(),
      "Matching Networks (the model is the embedding).");
  m.def("learner_names", [] { return meta::learner_names(); }, "The registry's learner kinds.");

  // ---- a `metatape train` checkpoint, for adaptation (capi/inference_model.h) ------------------------
  using capi::InferenceModel;
  nb::class_<capi::Adapted>(m, "InferenceAdapted", "A support set's adaptation by an InferenceModel.")
      .def_ro("support_rows", &capi::Adapted::support_rows)
      .def_ro("steps", &capi::Adapted::steps)
      .def_ro("bytes", &capi::Adapted::bytes);
  nb::class_<InferenceModel>(m, "InferenceModel",
                             "A meta-trained checkpoint (from `metatape train`, learner.save() or the C API) "
                             "loaded for adaptation and prediction, float32. Thread-safe after loading.")
      .def_static(
          "load", [](const std::string& path) { return InferenceModel::load(path); }, nb::arg("path"),
          "Loads a checkpoint; raises naming the file and the problem.")
      .def_prop_ro("learner", &InferenceModel::learner_name)
      .def_prop_ro("model", &InferenceModel::model_description)
      .def_prop_ro("in_features", &InferenceModel::in_features)
      .def_prop_ro("out_features", &InferenceModel::out_features)
      .def_prop_ro("task_kind", [](const InferenceModel& im) { return std::string(kind_text(im.task_kind())); })
      .def_prop_ro("num_classes", &InferenceModel::num_classes)
      .def_prop_ro("default_steps", &InferenceModel::default_steps)
      .def_prop_ro("step", &InferenceModel::step)
      .def(
          "set_task",
          [](InferenceModel& im, const std::string& kind, std::int64_t classes) {
            im.set_task(parse_task_kind(kind), classes);
          },
          nb::arg("kind"), nb::arg("num_classes") = 0,
          "Sets the task kind ('regression', 'classification', 'portfolio'); refuses one that contradicts the "
          "checkpoint's recorded kind.")
      .def(
          "adapt",
          [](const InferenceModel& im, nb::handle x, nb::handle y, int steps) {
            Tensor xt = as_tensor(x, "adapt: x", DType::f32);
            Tensor yt = as_tensor(y, "adapt: y", DType::f32);
            if (xt.rank() != 2) fail("adapt: x must be (rows, features), got " + describe(xt));
            const std::int64_t ycols = yt.rank() == 2 ? yt.dim(1) : 1;
            nb::gil_scoped_release release;
            return im.adapt(xt.data<float>(), xt.dim(0), xt.dim(1), yt.data<float>(), ycols, steps);
          },
          nb::arg("x"), nb::arg("y"), nb::arg("steps") = -1,
          "Adapts to a support set: x (rows, features) float32, y (rows, outputs) or class labels (rows,).")
      .def(
          "predict",
          [](const InferenceModel& im, const capi::Adapted& a, nb::handle x) {
            Tensor xt = as_tensor(x, "predict: x", DType::f32);
            if (xt.rank() != 2) fail("predict: x must be (rows, features), got " + describe(xt));
            std::int64_t cols = 0;
            std::vector<float> out;
            {
              nb::gil_scoped_release release;
              out = im.predict(a, xt.data<float>(), xt.dim(0), xt.dim(1), cols);
            }
            return to_numpy(Tensor::from_vector(out, Shape{xt.dim(0), cols}));
          },
          nb::arg("adapted"), nb::arg("x"), "Predictions (rows, columns) as a NumPy array.");
}

}  // namespace metatape::python
