// A one-line progress bar with ETA and live metrics, redrawn in place ("\r") on a terminal stream.
// Redraws at most every `min_interval_s` seconds (and always on finish). When disabled it prints
// nothing, so tests and pipes stay clean. In `lines` mode (for logs and pipes: the CLI's --progress
// when stderr is not a terminal) it prints the same text as whole lines, no "\r" and no escape codes,
// at most one every `min_interval_s` seconds (10 by default) and one on finish.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace metatape::eval {

enum class ProgressMode { off, bar, lines };

class ProgressBar {
 public:
  ProgressBar(std::int64_t total, std::string label, bool enabled = true, std::FILE* stream = stderr,
              double min_interval_s = 0.2);
  // min_interval_s < 0: 0.2 s for the bar, 10 s for lines.
  ProgressBar(std::int64_t total, std::string label, ProgressMode mode, std::FILE* stream = stderr,
              double min_interval_s = -1.0);
  // done: units completed so far (<= total); status: short live metrics, e.g. "loss 0.93 acc 0.41".
  void update(std::int64_t done, const std::string& status = "");
  void set_total(std::int64_t total) { total_ = total < 1 ? 1 : total; }
  void set_label(std::string label) { label_ = std::move(label); }
  // Draws the final state and ends the line.
  void finish(const std::string& status = "");
  double elapsed_seconds() const;
  // "[#####.....]  50%  12/24  0:05 < 0:05  status", for tests.
  std::string render(std::int64_t done, const std::string& status) const;

 private:
  std::int64_t total_;
  std::string label_;
  bool enabled_;
  bool lines_ = false;
  std::FILE* stream_;
  double min_interval_s_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

// "1:05", "12:00:03".
std::string format_duration(double seconds);

}  // namespace metatape::eval
