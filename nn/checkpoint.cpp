#include "nn/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "kernels/error.h"

namespace metatape::nn {
namespace {

constexpr char magic[8] = {'M', 'T', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr std::uint32_t format_version = 1;
constexpr std::size_t fixed_prefix = 8 + 4 + 8;  // magic, version, header_len
constexpr std::size_t checksum_bytes = 8;

std::uint64_t fnv1a(const unsigned char* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ULL) {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

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
    header["generator"] = {{"words", words},
                           {"has_spare", g.has_spare_normal},
                           {"spare_bits", std::to_string(spare_bits)}};
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
  put_le(file, fnv1a(file.data(), file.size()), 8);

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

Checkpoint load_checkpoint(const std::string& path) {
  const std::string where = "checkpoint '" + path + "'";
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(where + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<unsigned char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < fixed_prefix + checksum_bytes) {
    fail(where + ": file is truncated (" + std::to_string(file.size()) +
         " bytes, smaller than the fixed header)");
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
  if (header_len > file.size() - fixed_prefix - checksum_bytes) {
    fail(where + ": file is truncated (header of " + std::to_string(header_len) +
         " bytes does not fit in " + std::to_string(file.size()) + " bytes)");
  }
  const std::uint64_t stored = get_le(file.data() + file.size() - checksum_bytes, 8);
  const std::uint64_t actual = fnv1a(file.data(), file.size() - checksum_bytes);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file.begin() + fixed_prefix,
                                   file.begin() + static_cast<std::ptrdiff_t>(fixed_prefix + header_len));
  } catch (const nlohmann::json::exception&) {
    if (stored != actual) fail(where + ": checksum mismatch (the file is truncated or corrupted)");
    fail(where + ": the header is not valid JSON");
  }
  const std::size_t data_begin = fixed_prefix + header_len;
  const std::size_t data_len = file.size() - checksum_bytes - data_begin;
  Checkpoint cp;
  try {
    // Size check before the checksum so a truncated file is reported as such.
    std::size_t expected_data = 0;
    for (const auto& [section, entries] : header.at("sections").items()) {
      for (const auto& e : entries) {
        expected_data = std::max<std::size_t>(expected_data, e.at("offset").get<std::size_t>() +
                                                                 e.at("bytes").get<std::size_t>());
      }
    }
    if (expected_data > data_len) {
      fail(where + ": file is truncated (the header lists " + std::to_string(expected_data) +
           " data bytes, the file holds " + std::to_string(data_len) + ")");
    }
    if (stored != actual) fail(where + ": checksum mismatch (the file is corrupted)");
    if (expected_data != data_len) {
      fail(where + ": " + std::to_string(data_len - expected_data) + " unexpected trailing data bytes");
    }
    cp.config_json = header.at("config").dump();
    cp.step = header.at("step").get<std::int64_t>();
    if (header.contains("generator")) {
      const auto& g = header.at("generator");
      Generator::State s;
      const auto& words = g.at("words");
      if (words.size() != 4) fail(where + ": generator state needs 4 words, got " + std::to_string(words.size()));
      for (std::size_t i = 0; i < 4; ++i) s.words[i] = std::stoull(words[i].get<std::string>());
      s.has_spare_normal = g.at("has_spare").get<bool>();
      const std::uint64_t bits = std::stoull(g.at("spare_bits").get<std::string>());
      std::memcpy(&s.spare_normal, &bits, sizeof bits);
      cp.generator = s;
    }
    for (const auto& [section, entries] : header.at("sections").items()) {
      ParameterList list;
      for (const auto& e : entries) {
        const std::string name = e.at("name").get<std::string>();
        const std::string ctx = where + ": section '" + section + "' entry '" + name + "'";
        const DType dtype = parse_dtype(e.at("dtype").get<std::string>(), ctx);
        const auto& dims = e.at("shape");
        if (dims.size() > static_cast<std::size_t>(kernels::max_rank)) fail(ctx + ": rank above 4");
        Shape shape = Shape::of_rank(static_cast<int>(dims.size()));
        for (std::size_t a = 0; a < dims.size(); ++a) {
          shape[static_cast<int>(a)] = dims[a].get<std::int64_t>();
          if (shape[static_cast<int>(a)] < 0) fail(ctx + ": negative dimension");
        }
        const std::size_t bytes = e.at("bytes").get<std::size_t>();
        if (bytes != static_cast<std::size_t>(shape.numel()) * kernels::dtype_size(dtype)) {
          fail(ctx + ": " + std::to_string(bytes) + " bytes do not match shape " + shape.str() + " " +
               kernels::dtype_name(dtype));
        }
        Tensor t = Tensor::empty(shape, dtype);
        std::memcpy(t.raw_data(), file.data() + data_begin + e.at("offset").get<std::size_t>(), bytes);
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
      fail("checkpoint: parameter '" + target.name(i) + "' in section '" + section + "' is " +
           s.shape().str() + " " + kernels::dtype_name(s.dtype()) + ", the model expects " +
           t.shape().str() + " " + kernels::dtype_name(t.dtype()));
    }
    t.assign(s.device() == t.device() ? s : s.to(t.device()));
  }
}

}  // namespace metatape::nn
