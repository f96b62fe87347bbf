// The binding files' entry points (module.cpp calls them in order).
#pragma once

#include <nanobind/nanobind.h>

#include <string>

#include "tasks/families.h"
#include "tasks/task.h"

namespace nb = nanobind;

namespace metatape::python {

void init_tensor(nb::module_& m);
void init_tasks(nb::module_& m, nb::module_& tasks_module);
void init_learners(nb::module_& m, nb::module_& nn_module, nb::module_& optim);
void init_evaluate(nb::module_& evaluate_module);

// "classification" / "regression" / "portfolio"; throws listing them.
tasks::TaskKind parse_task_kind(const std::string& text);
const char* task_kind_text(tasks::TaskKind kind);
// The prepared market of a metatape.tasks.Market object; throws naming `what` for anything else.
std::shared_ptr<const tasks::PreparedMarket> market_prepared(nb::handle market, const std::string& what);

}  // namespace metatape::python
