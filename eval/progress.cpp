#include "eval/progress.h"

#include <algorithm>
#include <cmath>

namespace metatape::eval {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

ProgressBar::ProgressBar(std::int64_t total, std::string label, bool enabled, std::FILE* stream, double min_interval_s)
    : total_(std::max<std::int64_t>(total, 1)),
      label_(std::move(label)),
      enabled_(enabled),
      stream_(stream),
      min_interval_s_(min_interval_s),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::ProgressBar(std::int64_t total, std::string label, ProgressMode mode, std::FILE* stream,
                         double min_interval_s)
    : ProgressBar(total, std::move(label), mode != ProgressMode::off, stream,
                  min_interval_s >= 0           ? min_interval_s
                  : mode == ProgressMode::lines ? 10.0
                                                : 0.2) {
  lines_ = mode == ProgressMode::lines;
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressBar::render(std::int64_t done, const std::string& status) const {
  done = std::clamp<std::int64_t>(done, 0, total_);
  const double fraction = static_cast<double>(done) / static_cast<double>(total_);
  constexpr int width = 24;
  const int filled = static_cast<int>(fraction * width);
  std::string bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "]";
  const double elapsed = elapsed_seconds();
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : NAN;
  char head[160];
  std::snprintf(head, sizeof head, "%s %s %3d%% %lld/%lld %s < %s", label_.c_str(), bar.c_str(),
                static_cast<int>(fraction * 100.0), static_cast<long long>(done), static_cast<long long>(total_),
                format_duration(elapsed).c_str(), format_duration(eta).c_str());
  std::string line = head;
  if (!status.empty()) line += "  " + status;
  return line;
}

void ProgressBar::update(std::int64_t done, const std::string& status) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && std::chrono::duration<double>(now - last_draw_).count() < min_interval_s_) return;
  last_draw_ = now;
  drawn_ = true;
  if (lines_)
    std::fprintf(stream_, "%s\n", render(done, status).c_str());
  else
    std::fprintf(stream_, "\r\033[K%s", render(done, status).c_str());
  std::fflush(stream_);
}

void ProgressBar::finish(const std::string& status) {
  if (!enabled_) return;
  std::fprintf(stream_, lines_ ? "%s\n" : "\r\033[K%s\n", render(total_, status).c_str());
  std::fflush(stream_);
}

}  // namespace metatape::eval
