#include "nn/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "autograd/hash.h"
#include "kernels/error.h"

namespace metatape::nn {
namespace {

constexpr char magic[8] = {'M', 'T', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr std::uint32_t format_version = 1;
constexpr std::size_t fixed_prefix = 8 + 4 + 8;  // magic, version, header_len
constexpr std::size_t checksum_bytes = 8;
constexpr int max_header_depth = 64;

void put_le(std::vector<unsigned char>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
std::uint64_t get_le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

DType parse_dtype(const std::string& s, const std::string& where) {
  if (s == "f32") return DType::f32;
  if (s == "f64") return DType::f64;
  if (s == "i64") return DType::i64;
  fail(where + ": unknown dtype '" + s + "' (expected f32, f64 or i64)");
}

[[noreturn]] void io_fail(const std::string& what, const std::string& path) {
  fail("checkpoint: " + what + " '" + path + "': " + std::strerror(errno));
}

void write_all(int fd, const unsigned char* data, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      io_fail("cannot write", path);
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

// A non-negative integer header field (JSON integer, not a float, not negative) as u64.
std::uint64_t header_uint(const nlohmann::json& object, const char* key, const std::string& ctx) {
  const auto& v = object.at(key);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    fail(ctx + ": " + key + " " + v.dump() + " is negative");
  }
  fail(ctx + ": " + key + " " + v.dump() + " is not a non-negative integer");
}

// A u64 written as a decimal string (generator words), refusing anything else.
std::uint64_t decimal_u64(const nlohmann::json& v, const std::string& ctx) {
  if (!v.is_string()) fail(ctx + " " + v.dump() + " is not a decimal string");
  const std::string& s = v.get_ref<const std::string&>();
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    fail(ctx + " '" + s + "' is not a decimal u64");
  }
  return value;
}

// "checkpoint 'p': section 's' entry 'name'" (or "entry #i" when the name is unusable).
std::string entry_context(const std::string& where, const std::string& section, const nlohmann::json& e,
                          std::size_t index) {
  std::string ctx = where + ": section '" + section + "' entry ";
  if (e.is_object() && e.contains("name") && e["name"].is_string())
    return ctx + "'" + e["name"].get<std::string>() + "'";
  return ctx + "#" + std::to_string(index);
}

// The whole file, refusing what is not a regular file (a directory, a device such as /dev/zero, a
// FIFO) and a file larger than max_bytes, before reading it.
std::vector<unsigned char> read_checkpoint_file(const std::string& path, const std::string& where,
                                                std::uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(where + ": cannot open (" + std::strerror(errno) + ")");
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(where + ": cannot stat (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) fail(where + ": is a directory, not a checkpoint file (name the .ckpt file inside it)");
  if (!S_ISREG(st.st_mode)) {
    fail(where + ": is not a regular file (a device, FIFO or socket); a checkpoint must be a file");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes) {
    fail(where + ": the file has " + std::to_string(size) + " bytes, more than the checkpoint limit of " +
         std::to_string(max_bytes) + " bytes (load_checkpoint's max_bytes; raise it for a larger model)");
  }
  std::vector<unsigned char> file(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < file.size()) {
    const ssize_t r = ::read(fd, file.data() + done, file.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(where + ": cannot read (" + std::strerror(errno) + ")");
    }
    if (r == 0) break;  // the file shrank while being read: the checks below report it truncated
    done += static_cast<std::size_t>(r);
  }
  file.resize(done);
  return file;
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(checkpoint.config_json);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint: the training config is not valid JSON (" + std::string(e.what()) + ")");
  }
  nlohmann::json header;
  header["config"] = config;
  header["step"] = checkpoint.step;
  if (checkpoint.generator) {
    const auto& g = *checkpoint.generator;
    nlohmann::json words = nlohmann::json::array();
    for (auto w : g.words) words.push_back(std::to_string(w));
    std::uint64_t spare_bits = 0;
    std::memcpy(&spare_bits, &g.spare_normal, sizeof spare_bits);
    header["generator"] = {
        {"words", words}, {"has_spare", g.has_spare_normal}, {"spare_bits", std::to_string(spare_bits)}};
  }
  std::vector<unsigned char> data;
  nlohmann::json sections = nlohmann::json::object();
  for (const auto& [section, list] : checkpoint.sections) {
    nlohmann::json entries = nlohmann::json::array();
    for (std::size_t i = 0; i < list.size(); ++i) {
      const Tensor t = list[i].to(Device::cpu);
      const std::size_t bytes = static_cast<std::size_t>(t.numel()) * kernels::dtype_size(t.dtype());
      nlohmann::json shape = nlohmann::json::array();
      for (int a = 0; a < t.rank(); ++a) shape.push_back(t.dim(a));
      entries.push_back({{"name", list.name(i)},
                         {"dtype", kernels::dtype_name(t.dtype())},
                         {"shape", shape},
                         {"offset", data.size()},
                         {"bytes", bytes}});
      const auto* p = static_cast<const unsigned char*>(t.raw_data());
      data.insert(data.end(), p, p + bytes);
    }
    sections[section] = entries;
  }
  header["sections"] = sections;
  const std::string text = header.dump();

  std::vector<unsigned char> file;
  file.reserve(fixed_prefix + text.size() + data.size() + checksum_bytes);
  file.insert(file.end(), magic, magic + 8);
  put_le(file, format_version, 4);
  put_le(file, text.size(), 8);
  file.insert(file.end(), text.begin(), text.end());
  file.insert(file.end(), data.begin(), data.end());
  put_le(file, fnv1a64(file.data(), file.size()), 8);

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_fail("cannot create", tmp);
  try {
    write_all(fd, file.data(), file.size(), tmp);
    if (::fsync(fd) != 0) io_fail("cannot fsync", tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    io_fail("cannot close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    io_fail("cannot rename the temporary file onto", path);
  }
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Checkpoint load_checkpoint(const std::string& path, std::uint64_t max_bytes) {
  const std::string where = "checkpoint '" + path + "'";
  const std::vector<unsigned char> file = read_checkpoint_file(path, where, max_bytes);
  if (file.size() < fixed_prefix + checksum_bytes) {
    fail(where + ": file is truncated (" + std::to_string(file.size()) + " bytes, smaller than the fixed header)");
  }
  if (std::memcmp(file.data(), magic, 8) != 0) {
    fail(where + ": bad magic, not a metatape checkpoint");
  }
  const auto version = static_cast<std::uint32_t>(get_le(file.data() + 8, 4));
  if (version != format_version) {
    fail(where + ": format version " + std::to_string(version) + " is not supported (this build reads version " +
         std::to_string(format_version) + ")");
  }
  const std::uint64_t header_len = get_le(file.data() + 12, 8);
  // file.size() >= fixed_prefix + checksum_bytes, so the right side does not wrap.
  if (header_len > file.size() - fixed_prefix - checksum_bytes) {
    fail(where + ": file is truncated (header of " + std::to_string(header_len) + " bytes does not fit in " +
         std::to_string(file.size()) + " bytes)");
  }
  const std::uint64_t stored = get_le(file.data() + file.size() - checksum_bytes, 8);
  const std::uint64_t actual = fnv1a64(file.data(), file.size() - checksum_bytes);
  nlohmann::json header;
  try {
    // Nesting is bounded: printing and searching the config recurse, so a header of a million '['
    // would overflow the stack.
    const nlohmann::json::parser_callback_t limit_depth = [&](int depth, nlohmann::json::parse_event_t,
                                                              nlohmann::json&) {
      if (depth > max_header_depth) {
        fail(where + ": the header nests deeper than " + std::to_string(max_header_depth) + " levels");
      }
      return true;
    };
    header = nlohmann::json::parse(file.begin() + fixed_prefix,
                                   file.begin() + static_cast<std::ptrdiff_t>(fixed_prefix + header_len), limit_depth);
  } catch (const nlohmann::json::exception&) {
    if (stored != actual) fail(where + ": checksum mismatch (the file is truncated or corrupted)");
    fail(where + ": the header is not valid JSON");
  }
  const std::size_t data_begin = fixed_prefix + static_cast<std::size_t>(header_len);
  const std::uint64_t data_len = file.size() - checksum_bytes - data_begin;
  Checkpoint cp;
  try {
    if (!header.is_object()) fail(where + ": malformed header (not a JSON object)");
    const auto& sections = header.at("sections");
    if (!sections.is_object()) fail(where + ": malformed header (\"sections\" is not an object)");
    // Every entry's [offset, offset + bytes) must lie inside the data block. Checked before the
    // checksum so a truncated file is reported as such; the sum is never formed (it could wrap).
    std::uint64_t expected_data = 0;
    for (const auto& [section, entries] : sections.items()) {
      if (!entries.is_array()) fail(where + ": section '" + section + "' is not an array of entries");
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        const std::string ctx = entry_context(where, section, e, i);
        const std::uint64_t offset = header_uint(e, "offset", ctx);
        const std::uint64_t bytes = header_uint(e, "bytes", ctx);
        if (offset > data_len || bytes > data_len - offset) {
          std::string end_text = "past 2^64";
          if (bytes <= std::numeric_limits<std::uint64_t>::max() - offset) end_text = std::to_string(offset + bytes);
          fail(ctx + ": data range [offset " + std::to_string(offset) + ", end " + end_text +
               ") lies outside the file's " + std::to_string(data_len) +
               " data bytes (the file is truncated or was crafted)");
        }
        expected_data = std::max(expected_data, offset + bytes);
      }
    }
    if (stored != actual) fail(where + ": checksum mismatch (the file is corrupted)");
    if (expected_data != data_len) {
      fail(where + ": " + std::to_string(data_len - expected_data) + " unexpected trailing data bytes");
    }
    cp.config_json = header.at("config").dump();
    const std::uint64_t step = header_uint(header, "step", where);
    if (step > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(where + ": step " + std::to_string(step) + " is out of range");
    }
    cp.step = static_cast<std::int64_t>(step);
    if (header.contains("generator")) {
      const auto& g = header.at("generator");
      Generator::State s;
      const auto& words = g.at("words");
      if (!words.is_array() || words.size() != 4) {
        fail(where + ": generator state needs 4 words, got " +
             (words.is_array() ? std::to_string(words.size()) : words.dump()));
      }
      for (std::size_t i = 0; i < 4; ++i)
        s.words[i] = decimal_u64(words[i], where + ": generator word " + std::to_string(i));
      if (!g.at("has_spare").is_boolean()) fail(where + ": generator has_spare is not true or false");
      s.has_spare_normal = g.at("has_spare").get<bool>();
      const std::uint64_t bits = decimal_u64(g.at("spare_bits"), where + ": generator spare_bits");
      std::memcpy(&s.spare_normal, &bits, sizeof bits);
      cp.generator = s;
    }
    for (const auto& [section, entries] : sections.items()) {
      ParameterList list;
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        const std::string ctx = entry_context(where, section, e, i);
        if (!e.at("name").is_string() || e.at("name").get<std::string>().empty()) {
          fail(ctx + ": the name is not a non-empty string");
        }
        const std::string name = e.at("name").get<std::string>();
        if (list.contains(name)) fail(ctx + ": a second entry with this name");
        if (!e.at("dtype").is_string()) fail(ctx + ": dtype " + e.at("dtype").dump() + " is not a string");
        const DType dtype = parse_dtype(e.at("dtype").get<std::string>(), ctx);
        const auto& dims = e.at("shape");
        if (!dims.is_array()) fail(ctx + ": shape " + dims.dump() + " is not an array");
        if (dims.size() > static_cast<std::size_t>(kernels::max_rank)) {
          fail(ctx + ": rank " + std::to_string(dims.size()) + " is above " + std::to_string(kernels::max_rank));
        }
        Shape shape = Shape::of_rank(static_cast<int>(dims.size()));
        // numel * dtype size, refusing a product that does not fit in 63 bits.
        std::uint64_t expected_bytes = kernels::dtype_size(dtype);
        for (std::size_t a = 0; a < dims.size(); ++a) {
          const std::string dim_ctx = ctx + ": dimension " + std::to_string(a);
          if (!dims[a].is_number_unsigned()) {  // a negative integer is stored signed, a float as float
            fail(dim_ctx + " is " + dims[a].dump() + ", not a non-negative integer");
          }
          const std::uint64_t d = dims[a].get<std::uint64_t>();
          std::uint64_t product = 0;
          if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
              __builtin_mul_overflow(expected_bytes, d, &product) ||
              product > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            fail(ctx + ": shape " + dims.dump() + " " + kernels::dtype_name(dtype) +
                 " overflows (more than 2^63 bytes)");
          }
          expected_bytes = product;
          shape[static_cast<int>(a)] = static_cast<std::int64_t>(d);
        }
        const std::uint64_t bytes = header_uint(e, "bytes", ctx);
        if (bytes != expected_bytes) {
          fail(ctx + ": " + std::to_string(bytes) + " bytes do not match shape " + shape.str() + " " +
               kernels::dtype_name(dtype) + " (" + std::to_string(expected_bytes) + " bytes)");
        }
        const std::uint64_t offset = header_uint(e, "offset", ctx);  // in range: checked above
        Tensor t = Tensor::empty(shape, dtype);
        if (bytes > 0) std::memcpy(t.raw_data(), file.data() + data_begin + offset, static_cast<std::size_t>(bytes));
        list.add(name, t);
      }
      cp.sections[section] = std::move(list);
    }
  } catch (const nlohmann::json::exception& e) {
    if (stored != actual) fail(where + ": checksum mismatch (the file is corrupted)");
    fail(where + ": malformed header (" + std::string(e.what()) + ")");
  }
  return cp;
}

void restore_section(const Checkpoint& checkpoint, const std::string& section, ParameterList& target) {
  const auto it = checkpoint.sections.find(section);
  if (it == checkpoint.sections.end()) {
    fail("checkpoint: no section '" + section + "' in the file");
  }
  const ParameterList& saved = it->second;
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (!saved.contains(target.name(i))) {
      fail("checkpoint: section '" + section + "' lacks parameter '" + target.name(i) +
           "' (was it written by a different model?)");
    }
  }
  for (std::size_t i = 0; i < saved.size(); ++i) {
    if (!target.contains(saved.name(i))) {
      fail("checkpoint: section '" + section + "' has parameter '" + saved.name(i) +
           "' that the model does not (was it written by a different model?)");
    }
  }
  for (std::size_t i = 0; i < target.size(); ++i) {
    const Tensor& s = saved.get(target.name(i));
    Tensor& t = target[i];
    if (s.shape() != t.shape() || s.dtype() != t.dtype()) {
      fail("checkpoint: parameter '" + target.name(i) + "' in section '" + section + "' is " + s.shape().str() + " " +
           kernels::dtype_name(s.dtype()) + ", the model expects " + t.shape().str() + " " +
           kernels::dtype_name(t.dtype()));
    }
    t.assign(s.device() == t.device() ? s : s.to(t.device()));
  }
}

}  // namespace metatape::nn
