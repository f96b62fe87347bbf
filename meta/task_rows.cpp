#include "meta/task_rows.h"

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"

namespace metatape::meta {

TaskRows::TaskRows(const tasks::TaskBatch& batch, const std::vector<Tensor>& like, int scalars,
                   const dist::Communicator* comm)
    : comm_(comm != nullptr ? *comm : dist::world()),
      tasks_(static_cast<std::int64_t>(batch.size())),
      share_(comm_.share(tasks_)),
      scalars_(scalars) {
  if (like.empty()) fail("TaskRows: a row needs at least one tensor");
  dtype_ = like.front().dtype();
  device_ = like.front().device();
  for (const Tensor& t : like) {
    shapes_.push_back(t.shape());
    width_ += t.numel();
  }
  width_ += scalars;
}

void TaskRows::add(const std::vector<Tensor>& tensors, const std::vector<Tensor>& scalars, double host_value) {
  if (tensors.size() != shapes_.size() || static_cast<int>(scalars.size()) > scalars_) {
    fail("TaskRows::add: " + std::to_string(tensors.size()) + " tensors and " + std::to_string(scalars.size()) +
         " scalars for rows of " + std::to_string(shapes_.size()) + " and " + std::to_string(scalars_));
  }
  if (static_cast<std::int64_t>(rows_.size()) >= share_.size()) fail("TaskRows::add: more rows than tasks in the share");
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  parts.reserve(tensors.size() + static_cast<std::size_t>(scalars_));
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::int64_t numel = shapes_[i].numel();
    parts.push_back(tensors[i].defined() ? reshape(tensors[i].detach(), Shape{1, numel})
                                         : Tensor::zeros(Shape{1, numel}, dtype_, device_));
  }
  for (int k = 0; k < scalars_; ++k) {
    const auto ks = static_cast<std::size_t>(k);
    parts.push_back(ks < scalars.size() && scalars[ks].defined() ? reshape(scalars[ks].detach(), Shape{1, 1})
                                                                 : Tensor::zeros(Shape{1, 1}, dtype_, device_));
  }
  rows_.push_back(concat(parts, 1));
  host_.push_back(host_value);
}

TaskRows::Sums TaskRows::sum() const {
  if (static_cast<std::int64_t>(rows_.size()) != share_.size()) {
    fail("TaskRows::sum: " + std::to_string(rows_.size()) + " rows added for a share of " +
         std::to_string(share_.size()) + " tasks");
  }
  NoGradGuard no_grad;
  const Tensor local = rows_.empty() ? Tensor::zeros(Shape{0, width_}, dtype_, device_) : concat(rows_, 0);
  const Tensor all = comm_.all_gather_rows(local, tasks_);
  // One reduction over the task axis, in the kernel's fixed order (deterministic on each device).
  const Tensor total = metatape::sum(all, 0);
  Sums out;
  std::int64_t at = 0;
  for (const Shape& s : shapes_) {
    out.tensors.push_back(total.piece(at, s));  // views of the one reduced row, no copies
    at += s.numel();
  }
  for (int k = 0; k < scalars_; ++k) out.scalars.push_back(total.piece(at++, Shape{}));
  const std::vector<double> host = comm_.size() == 1 ? host_ : comm_.all_gather(host_);
  for (double v : host) out.host += v;
  return out;
}

}  // namespace metatape::meta
