#include "tasks/compressed_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kernels/error.h"

namespace metatape::tasks {

namespace {

[[noreturn]] void too_large(const std::string& path, const char* what, std::int64_t limit) {
  fail("load: " + path + ": " + what + " more than " + std::to_string(limit) +
       " bytes, the limit on one data file (LoadOptions::max_decompressed_bytes; raise it if the file "
       "is genuine)");
}

}  // namespace

std::string read_file(const std::string& path, std::int64_t max_bytes) {
  if (max_bytes < 1) fail("load: max_decompressed_bytes must be >= 1, got " + std::to_string(max_bytes));
  // Refuse what is not a regular file before reading: a directory reads as an error, a device such as
  // /dev/zero never ends, a FIFO blocks (hence O_NONBLOCK on open).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("load: cannot open " + path + " (" + std::strerror(errno) + "; check the path)");
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("load: cannot stat " + path + " (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) fail("load: " + path + " is a directory, not a data file (name the files inside it)");
  if (!S_ISREG(st.st_mode))
    fail("load: " + path + " is not a regular file (a device, FIFO or socket); give a data file");
  if (st.st_size > max_bytes) too_large(path, "the file has", max_bytes);
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("load: cannot read " + path + " (" + std::strerror(errno) + ")");
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  bytes.resize(got);
  if (bytes.size() < 2 || static_cast<unsigned char>(bytes[0]) != 0x1f || static_cast<unsigned char>(bytes[1]) != 0x8b)
    return bytes;
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) fail("load: " + path + ": zlib inflateInit failed");
  struct InflateEnd {
    z_stream* zs;
    ~InflateEnd() { inflateEnd(zs); }
  } ender{&zs};
  const auto limit = static_cast<std::size_t>(max_bytes);
  std::string out;
  std::size_t produced = 0;  // zs.total_out is a uLong and is reset between gzip members
  std::size_t consumed = 0;
  // The buffer grows geometrically up to limit + 1 bytes: one byte past the limit proves the excess.
  out.resize(std::min(bytes.size() * 4 + 1024, limit + 1));
  while (true) {
    if (produced == out.size()) {
      if (out.size() > limit) too_large(path, "gzip data decompresses to", max_bytes);
      out.resize(std::min(out.size() * 2, limit + 1));
    }
    const std::size_t in_chunk = std::min<std::size_t>(bytes.size() - consumed, 1u << 30);
    const std::size_t out_chunk = std::min<std::size_t>(out.size() - produced, 1u << 30);
    zs.next_in = reinterpret_cast<Bytef*>(bytes.data() + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members: continue with the next one.
      if (consumed < bytes.size()) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      fail("load: " + path + ": gzip data is corrupt (zlib error " + std::to_string(rc) + ")");
    }
    if (rc == Z_BUF_ERROR && consumed == bytes.size() && produced < out.size()) {
      fail("load: " + path + ": gzip data is truncated");
    }
  }
  if (produced > limit) too_large(path, "gzip data decompresses to", max_bytes);
  out.resize(produced);
  return out;
}

}  // namespace metatape::tasks
