// convert_model: any checkpoint WeightStore reads -> one model.safetensors (+ the folder's json
// and tokenizer files), written beside the destination and renamed into place.
#include <xcaption/convert.hpp>

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "src/io/hf_cache.hpp"
#include "src/io/json_config.hpp"
#include "src/io/safetensors.hpp"
#include "src/io/weights.hpp"

namespace xcaption {

namespace fs = std::filesystem;

namespace {

// The files of a Hugging Face model folder besides its weights that loading it may read.
constexpr const char* kModelFiles[] = {
    "config.json",           "generation_config.json", "preprocessor_config.json", "tokenizer.json",
    "vocab.json",            "merges.txt",             "vocab.txt",                "special_tokens_map.json",
    "tokenizer_config.json", "added_tokens.json",
};

// Element sizes in bits of the safetensors dtype names (ref: safetensors `Dtype`).
int dtype_bits(const std::string& name) {
  static const std::map<std::string, int> bits = {
      {"F64", 64},    {"I64", 64},     {"U64", 64},     {"C64", 64},     {"F32", 32},     {"I32", 32},
      {"U32", 32},    {"F16", 16},     {"BF16", 16},    {"I16", 16},     {"U16", 16},     {"I8", 8},
      {"U8", 8},      {"BOOL", 8},     {"F8_E5M2", 8},  {"F8_E4M3", 8},  {"F8_E8M0", 8},  {"F6_E2M3", 6},
      {"F6_E3M2", 6}, {"F4", 4},
  };
  auto it = bits.find(name);
  return it == bits.end() ? 0 : it->second;
}

std::optional<DType> float_dtype(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  return std::nullopt;
}

DType to_dtype(StorageType t) {
  switch (t) {
    case StorageType::F32: return DType::F32;
    case StorageType::F16: return DType::F16;
    case StorageType::BF16: return DType::BF16;
  }
  return DType::F32;
}

struct Planned {
  std::string name;
  std::vector<std::int64_t> shape;
  std::string out_dtype;            // safetensors name
  std::optional<DType> convert_to;  // float tensors: loaded as f32, then written in this dtype
  std::uint64_t out_bytes = 0;
  std::uint64_t source_bytes = 0;
  int bits = 0;
};

std::uint64_t element_count(const std::vector<std::int64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::string random_suffix() {
  std::random_device rd;
  return fmt::format("{}-{:08x}", ::getpid(), rd());
}

/// A new file written sequentially, with every write checked; fsync'ed before close.
class OutFile {
 public:
  explicit OutFile(fs::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) throw FormatError(fmt::format("{}: cannot create: {}", path_.string(), std::strerror(errno)));
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write(const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw FormatError(fmt::format("{}: write failed: {}", path_.string(), std::strerror(errno)));
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  void close() {
    if (::fsync(fd_) != 0 && errno != EINVAL)
      throw FormatError(fmt::format("{}: fsync failed: {}", path_.string(), std::strerror(errno)));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) throw FormatError(fmt::format("{}: close failed: {}", path_.string(), std::strerror(errno)));
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// Writes `count` float32 values as `dtype`, converting in blocks so that a large tensor needs no
// second full-size buffer.
void write_floats(OutFile& file, const float* src, std::size_t count, DType dtype) {
  if (dtype == DType::F32) {
    file.write(src, count * sizeof(float));
    return;
  }
  constexpr std::size_t kBlock = 1 << 20;
  std::vector<std::uint16_t> block(std::min(count, kBlock));
  for (std::size_t i = 0; i < count; i += kBlock) {
    const std::size_t n = std::min(kBlock, count - i);
    if (dtype == DType::BF16)
      f32_to_bf16(src + i, block.data(), static_cast<std::int64_t>(n));
    else
      for (std::size_t k = 0; k < n; ++k) block[k] = f32_to_f16(src[i + k]);
    file.write(block.data(), n * sizeof(std::uint16_t));
  }
}

bool looks_like_model_folder(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_empty(dir, ec)) return true;
  return fs::exists(dir / "config.json", ec) || fs::exists(dir / "model.safetensors", ec);
}

// True when `inner` is `outer` or lies inside it (both resolved through symlinks).
bool is_within(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(inner, ec);
  const fs::path b = fs::weakly_canonical(outer, ec);
  if (ec) return false;
  auto ia = a.begin();
  for (auto ib = b.begin(); ib != b.end(); ++ib, ++ia) {
    if (ib->empty()) continue;  // trailing separator
    if (ia == a.end() || *ia != *ib) return false;
  }
  return true;
}

// Renames `from` to `to`, failing if `to` exists (even as an empty folder, which rename(2) would
// replace silently).
int rename_noreplace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  std::error_code ec;  // the filesystem lacks RENAME_NOREPLACE: check, then rename
  if (fs::exists(fs::symlink_status(to, ec))) {
    errno = EEXIST;
    return -1;
  }
  return ::rename(from.c_str(), to.c_str());
}

}  // namespace

ConvertReport convert_model(const std::string& source, const fs::path& out, const ConvertOptions& options) {
  const ResolvedModel resolved = resolve_model_spec(source);
  const fs::path src = resolved.dir;
  ConvertReport report;
  report.source = src;
  std::error_code ec;

  const fs::path config = src / "config.json";
  if (!fs::is_regular_file(config, ec))
    throw FormatError(fmt::format("{}: no config.json, so this is not a model folder to convert", src.string()));
  config::read_json_object(config);  // malformed JSON fails here, before anything is written

  // The destination: refused early, before the work, when it exists without force.
  fs::path target = out;
  if (!target.has_filename()) target = target.parent_path();  // "dir/" -> "dir"
  if (target.empty()) throw FormatError("convert: the output folder name is empty");
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  if (!fs::is_directory(parent, ec))
    throw FormatError(fmt::format("{}: cannot write here: the parent folder {} does not exist", target.string(),
                                  parent.string()));
  const bool exists = fs::exists(fs::symlink_status(target, ec));
  if (exists) {
    if (!options.force)
      throw FormatError(fmt::format("{}: already exists; nothing was written (use --force to replace it)",
                                    target.string()));
    if (!fs::is_directory(target, ec))
      throw FormatError(fmt::format("{}: exists and is not a folder; not replacing it", target.string()));
    if (!looks_like_model_folder(target))
      throw FormatError(fmt::format(
          "{}: exists and does not look like a model folder (not empty, no config.json or model.safetensors); "
          "not replacing it, even with --force",
          target.string()));
    if (is_within(src, target))
      throw FormatError(fmt::format("{}: the source {} is inside it; replacing it would delete the source",
                                    target.string(), src.string()));
  }

  const WeightStore store = WeightStore::open(src);

  // Plan: every tensor, in safetensors' own order (element size descending, then name), which
  // keeps each tensor aligned to its element size when the data region starts 8-aligned.
  std::vector<Planned> plan;
  std::int64_t total_source = 0;
  for (const std::string& name : store.names()) {
    Planned p;
    p.name = name;
    p.shape = store.shape(name);
    const std::string stored = store.stored_dtype(name);
    const int stored_bits = dtype_bits(stored);
    if (stored_bits == 0)
      throw FormatError(fmt::format("{}: tensor '{}' has dtype {}, which safetensors cannot store",
                                    store.description(), name, stored));
    const std::uint64_t n = element_count(p.shape);
    p.source_bytes = (n * static_cast<std::uint64_t>(stored_bits) + 7) / 8;
    if (const auto f = float_dtype(stored)) {
      const DType d = options.dtype ? to_dtype(*options.dtype) : *f;
      p.convert_to = d;
      p.out_dtype = dtype_name(d);
      p.bits = static_cast<int>(dtype_size(d) * 8);
      p.out_bytes = n * dtype_size(d);
    } else {
      if (store.stored_bytes(name).size() != p.source_bytes) {
        report.dropped.push_back(name);
        continue;
      }
      p.out_dtype = stored;
      p.bits = stored_bits;
      p.out_bytes = p.source_bytes;
      report.kept_as_stored.push_back(name);
    }
    total_source += static_cast<std::int64_t>(p.source_bytes);
    plan.push_back(std::move(p));
  }
  std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return a.bits != b.bits ? a.bits > b.bits : a.name < b.name;
  });

  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::uint64_t offset = 0;
  std::set<std::string> dtypes;
  for (const auto& p : plan) {
    header[p.name] = {{"dtype", p.out_dtype}, {"shape", p.shape}, {"data_offsets", {offset, offset + p.out_bytes}}};
    offset += p.out_bytes;
    dtypes.insert(p.out_dtype);
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("{}: a tensor name cannot be written as JSON: {}", store.description(), e.what()));
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // ref: safetensors `prepare`

  // Write everything into a fresh folder beside the target.
  fs::path tmp;
  for (int attempt = 0; attempt < 100 && tmp.empty(); ++attempt) {
    const fs::path candidate = parent / ("." + target.filename().string() + ".xcaption-tmp-" + random_suffix());
    if (fs::create_directory(candidate, ec)) tmp = candidate;
    else if (ec) throw FormatError(fmt::format("{}: cannot create a folder there: {}", parent.string(), ec.message()));
  }
  if (tmp.empty()) throw FormatError(fmt::format("{}: cannot create a temporary folder there", parent.string()));

  try {
    {
      OutFile file(tmp / "model.safetensors");
      const std::uint64_t n = header_text.size();
      unsigned char len[8];
      for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
      file.write(len, 8);
      file.write(header_text.data(), header_text.size());
      std::int64_t done = 0;
      for (const auto& p : plan) {
        if (p.convert_to) {
          const FloatBuffer values = store.load(p.name);
          write_floats(file, values.data(), values.size(), *p.convert_to);
        } else {
          const auto bytes = store.stored_bytes(p.name);
          file.write(bytes.data(), bytes.size());
        }
        done += static_cast<std::int64_t>(p.source_bytes);
        if (options.progress) options.progress(done, total_source);
      }
      file.close();
    }
    // Read the header back: the file must be what the reader accepts.
    SafeTensorsFile::open(tmp / "model.safetensors");

    for (const char* name : kModelFiles) {
      const fs::path from = src / name;
      if (!fs::is_regular_file(from, ec)) continue;  // follows the cache's symlinks into blobs/
      fs::copy_file(from, tmp / name, ec);           // copies contents, never a link
      if (ec)
        throw FormatError(fmt::format("{}: cannot copy to {}: {}", from.string(), (tmp / name).string(), ec.message()));
      report.copied_files.emplace_back(name);
    }

    if (!exists) {
      if (rename_noreplace(tmp, target) != 0)
        throw FormatError(fmt::format("{}: cannot move the converted folder into place: {}", target.string(),
                                      std::strerror(errno)));
    } else {
      const fs::path old = parent / ("." + target.filename().string() + ".xcaption-old-" + random_suffix());
      if (::rename(target.c_str(), old.c_str()) != 0)
        throw FormatError(fmt::format("{}: cannot move the old folder aside: {}", target.string(), std::strerror(errno)));
      if (rename_noreplace(tmp, target) != 0) {
        const int err = errno;
        ::rename(old.c_str(), target.c_str());
        throw FormatError(fmt::format("{}: cannot move the converted folder into place: {}", target.string(),
                                      std::strerror(err)));
      }
      fs::remove_all(old, ec);  // best effort: the new folder is already in place
    }
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }

  report.weights = target / "model.safetensors";
  report.tensors = static_cast<std::int64_t>(plan.size());
  report.bytes = static_cast<std::int64_t>(8 + header_text.size() + offset);
  report.dtypes.assign(dtypes.begin(), dtypes.end());
  return report;
}

}  // namespace xcaption
