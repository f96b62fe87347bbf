#include "dist/communicator.h"

#include <string>

#include "autograd/ops.h"
#include "kernels/error.h"

namespace metatape::dist {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  Tensor all_gather_rows(const Tensor& local, std::int64_t n) const override {
    if (!local.defined() || local.rank() != 2 || local.dim(0) != n) {
      fail("all_gather_rows: one process holds all " + std::to_string(n) + " rows, got " +
           (local.defined() ? describe(local) : std::string("no tensor")));
    }
    return local;
  }
  std::vector<double> all_gather(const std::vector<double>& local) const override { return local; }
};

std::shared_ptr<const Communicator>& world_slot() {
  static std::shared_ptr<const Communicator> world = local_communicator();
  return world;
}

}  // namespace

Share share_of(std::int64_t n, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size || n < 0) {
    fail("share_of: rank " + std::to_string(rank) + " of " + std::to_string(size) + " processes, " +
         std::to_string(n) + " items");
  }
  return Share{n * rank / size, n * (rank + 1) / size};
}

std::vector<std::vector<double>> Communicator::all_gather_items(const std::vector<std::vector<double>>& local,
                                                                std::int64_t n) const {
  const Share mine = share(n);
  if (static_cast<std::int64_t>(local.size()) != mine.size()) {
    fail("all_gather_items: rank " + std::to_string(rank()) + " computes " + std::to_string(mine.size()) +
         " of the " + std::to_string(n) + " items but passed " + std::to_string(local.size()));
  }
  if (size() == 1) return local;
  // One buffer: each item as its length followed by its values.
  std::vector<double> packed;
  for (const auto& item : local) {
    packed.push_back(static_cast<double>(item.size()));
    packed.insert(packed.end(), item.begin(), item.end());
  }
  const std::vector<double> all = all_gather(packed);
  std::vector<std::vector<double>> out;
  out.reserve(static_cast<std::size_t>(n));
  std::size_t at = 0;
  while (at < all.size()) {
    const auto len = static_cast<std::size_t>(all[at++]);
    if (at + len > all.size()) fail("all_gather_items: a gathered item runs past the end (corrupt transfer)");
    out.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(at), all.begin() + static_cast<std::ptrdiff_t>(at + len));
    at += len;
  }
  if (static_cast<std::int64_t>(out.size()) != n) {
    fail("all_gather_items: gathered " + std::to_string(out.size()) + " items, expected " + std::to_string(n));
  }
  return out;
}

bool Communicator::any(bool value) const {
  if (size() == 1) return value;
  for (double v : all_gather({value ? 1.0 : 0.0})) {
    if (v != 0.0) return true;
  }
  return false;
}

const Communicator& world() { return *world_slot(); }

std::shared_ptr<const Communicator> local_communicator() { return std::make_shared<LocalCommunicator>(); }

void set_world(std::shared_ptr<const Communicator> communicator) {
  world_slot() = communicator ? std::move(communicator) : local_communicator();
}

}  // namespace metatape::dist
