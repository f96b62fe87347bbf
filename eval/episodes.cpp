#include "eval/episodes.h"

#include <algorithm>

#include "kernels/error.h"

namespace metatape::eval {

std::int64_t support_rows(const FamilySource& family, int shots) {
  if (shots < 1) fail("benchmark: shots must be >= 1, got " + std::to_string(shots));
  const std::int64_t per = family.kind == tasks::TaskKind::classification ? family.num_classes : 1;
  return std::max<std::int64_t>(2, shots * std::max<std::int64_t>(per, 1));
}

}  // namespace metatape::eval
