// Signs of a broken feed that no single row shows (internal to tasks/; the types are public in
// tasks/loaders.h). They are warnings: nothing is refused, dropped or changed, under any policy.
// Contract (thresholds are LoadOptions fields, 0 turns a check off):
//   - repeated_blocks, on the rows in file order after row validation: a run of at least
//     repeated_block_rows consecutive rows whose open, high, low, close and volume are all equal, in
//     order, to an earlier run at other timestamps. Runs where two neighbouring rows are equal or
//     every volume is 0 do not count (a frozen feed is the stale-tail check's business). One warning
//     per maximal repeated run, naming both line ranges and the time shift;
//   - stale_tail, on the rows in time order: the last >= stale_tail_bars bars are flat (open = high =
//     low = close) with volume 0; one warning naming the lines and the price;
//   - outliers, on the rows in time order: a wick with high / close or close / low above
//     outlier_wick_ratio (one warning per row), and a close-to-close log return more than
//     outlier_return_sigmas robust standard deviations (1.4826 x the median absolute deviation of the
//     non-zero returns) from their median and at least outlier_return_min in size, on files with at
//     least 30 rows.
//   Each kind keeps at most max_warnings_kept warnings; LoadReport::warning_counts stays exact.
#pragma once

#include <vector>

#include "tasks/validation.h"

namespace metatape::tasks {

void warn_repeated_blocks(const std::vector<Row>& file_order, const LoadOptions& options, LoadReport& report);
void warn_stale_tail(const std::vector<Row>& rows, const LoadOptions& options, LoadReport& report);
void warn_outliers(const std::vector<Row>& rows, const LoadOptions& options, LoadReport& report);

}  // namespace metatape::tasks
