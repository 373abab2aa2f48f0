#include "src/io/safetensors.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>
#include <xcaption/errors.hpp>

#include "src/io/checkpoint_folder.hpp"

namespace xcaption {

namespace {

using json = nlohmann::json;

// ref: safetensors MAX_HEADER_SIZE.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeSpec {
  const char* name;
  unsigned bits;  // element size in bits (sub-byte float formats exist)
  bool supported;
  DType dtype;
};

// Every dtype name the safetensors format defines. Only the three float formats the engine
// converts are `supported`; the others are recorded so that the data region can still be
// validated, and refused only when a model asks for such a tensor.
constexpr DTypeSpec kDTypes[] = {
    {"F32", 32, true, DType::F32},     {"F16", 16, true, DType::F16},
    {"BF16", 16, true, DType::BF16},   {"F64", 64, false, DType::F32},
    {"I64", 64, false, DType::F32},    {"U64", 64, false, DType::F32},
    {"I32", 32, false, DType::F32},    {"U32", 32, false, DType::F32},
    {"I16", 16, false, DType::F32},    {"U16", 16, false, DType::F32},
    {"I8", 8, false, DType::F32},      {"U8", 8, false, DType::F32},
    {"BOOL", 8, false, DType::F32},    {"F8_E5M2", 8, false, DType::F32},
    {"F8_E4M3", 8, false, DType::F32}, {"F8_E8M0", 8, false, DType::F32},
    {"F6_E2M3", 6, false, DType::F32}, {"F6_E3M2", 6, false, DType::F32},
    {"F4", 4, false, DType::F32},      {"C64", 64, false, DType::F32},
};

const DTypeSpec* find_dtype(std::string_view name) {
  for (const auto& spec : kDTypes)
    if (name == spec.name) return &spec;
  return nullptr;
}

std::string json_type(const json& v) {
  if (v.is_number_float()) return fmt::format("number {}", v.dump());
  if (v.is_number()) return fmt::format("integer {}", v.dump());
  if (v.is_string()) return fmt::format("string {}", v.dump());
  if (v.is_boolean()) return fmt::format("boolean {}", v.dump());
  return v.type_name();  // null, array, object
}

// Strict UTF-8 check (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(const unsigned char* s, std::size_t n, std::size_t* bad_at) {
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      *bad_at = i;
      return false;
    }
    if (i + len > n) {
      *bad_at = i;
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) {
        *bad_at = i;
        return false;
      }
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    const bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      *bad_at = i;
      return false;
    }
    i += len;
  }
  return true;
}

// A JSON integer that is >= 0, as uint64 (nullopt for floats, negatives and other types).
std::optional<std::uint64_t> as_unsigned(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    const auto s = v.get<std::int64_t>();
    if (s >= 0) return static_cast<std::uint64_t>(s);
  }
  return std::nullopt;
}

}  // namespace

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafeTensorsFile::SafeTensorsFile(SafeTensorsFile&& other) noexcept = default;

SafeTensorsFile& SafeTensorsFile::operator=(SafeTensorsFile&& other) noexcept = default;

SafeTensorsFile::~SafeTensorsFile() = default;

void SafeTensorsFile::release() {
  map_.release();
  for (auto& t : tensors_) t.data = nullptr;
}

void SafeTensorsFile::evict(const TensorInfo& tensor) const {
  // Whole pages only; a page shared with a neighbouring tensor is dropped too, which costs a
  // re-read from the page cache if that neighbour is loaded later, never wrong data.
  if (tensor.data) map_.evict(tensor.data, tensor.nbytes);
}

const TensorInfo* SafeTensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafeTensorsFile::get(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) throw FormatError(fmt::format("{}: tensor '{}' is missing", path_.string(), name));
  if (!t->supported)
    throw FormatError(fmt::format(
        "{}: tensor '{}' has dtype {}, which xcaption cannot compute with (supported: F32, F16, "
        "BF16)",
        path_.string(), name, t->dtype_name));
  return *t;
}

SafeTensorsFile SafeTensorsFile::open(const std::filesystem::path& path) {
  SafeTensorsFile result;
  result.path_ = path;
  result.map_ = MappedFile::open(path);  // errors: cannot open / stat / map, not a regular file
  if (result.map_.size() < 8)
    throw FormatError(fmt::format(
        "{}: file is {} bytes, shorter than the 8-byte header length of a safetensors file", path.string(),
        result.map_.size()));
  result.parse_header(result.map_.data());  // the tensors point into the mapping
  return result;
}

// Validates the header of the mapped file `bytes` (map_.size() bytes) and fills tensors_, index_
// and metadata_.
void SafeTensorsFile::parse_header(const unsigned char* bytes) {
  const std::string file = path_.string();
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes)
    throw FormatError(fmt::format(
        "{}: header length {} exceeds the 100000000-byte limit (corrupt file or not safetensors)",
        file, header_len));
  if (header_len > map_.size() - 8)
    throw FormatError(fmt::format(
        "{}: header length {} runs past the end of the file ({} bytes after the length field)",
        file, header_len, map_.size() - 8));
  const unsigned char* header = bytes + 8;
  const std::size_t data_size = map_.size() - 8 - header_len;

  std::size_t bad_at = 0;
  if (!is_valid_utf8(header, header_len, &bad_at))
    throw FormatError(
        fmt::format("{}: header is not valid UTF-8 (byte {} of the header)", file, bad_at));

  json root;
  try {
    root = json::parse(header, header + header_len);
  } catch (const json::exception& e) {
    throw FormatError(fmt::format("{}: header is not valid JSON: {}", file, e.what()));
  }
  if (!root.is_object())
    throw FormatError(
        fmt::format("{}: header is a JSON {}, expected an object", file, root.type_name()));
  if (header_len == 0 || header[0] != '{')
    throw FormatError(
        fmt::format("{}: header must begin with '{{' (found leading whitespace)", file));

  struct Span {
    std::uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Span> spans;
  tensors_.reserve(root.size());
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw FormatError(fmt::format("{}: \"__metadata__\" must be an object of strings, got {}",
                                      file, json_type(entry)));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          throw FormatError(fmt::format("{}: \"__metadata__\" key '{}' must be a string, got {}",
                                        file, key, json_type(value)));
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = fmt::format("{}: tensor '{}'", file, name);
    if (!entry.is_object())
      throw FormatError(
          fmt::format("{}: entry must be an object, got {}", where, json_type(entry)));

    TensorInfo t;
    t.name = name;

    auto dt = entry.find("dtype");
    if (dt == entry.end()) throw FormatError(where + ": missing \"dtype\"");
    if (!dt->is_string())
      throw FormatError(
          fmt::format("{}: \"dtype\" must be a string, got {}", where, json_type(*dt)));
    t.dtype_name = dt->get<std::string>();
    const DTypeSpec* spec = find_dtype(t.dtype_name);
    if (!spec)
      throw FormatError(
          fmt::format("{}: unknown dtype '{}' (not a safetensors dtype)", where, t.dtype_name));
    t.supported = spec->supported;
    t.dtype = spec->dtype;

    auto sh = entry.find("shape");
    if (sh == entry.end()) throw FormatError(where + ": missing \"shape\"");
    if (!sh->is_array())
      throw FormatError(
          fmt::format("{}: \"shape\" must be an array of integers, got {}", where, json_type(*sh)));
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *sh) {
      const auto dim = as_unsigned(d);
      if (!dim)
        throw FormatError(
            fmt::format("{}: shape {} has an invalid dimension {} (expected an integer >= 0)",
                        where, sh->dump(), d.dump()));
      if (*dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        overflow = true;
      if (__builtin_mul_overflow(numel, *dim, &numel)) overflow = true;
      t.shape.push_back(static_cast<std::int64_t>(*dim));
    }
    std::uint64_t bits = 0;
    if (overflow || __builtin_mul_overflow(numel, std::uint64_t{spec->bits}, &bits) ||
        numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw FormatError(
          fmt::format("{}: shape {} overflows (element count or byte size does not fit "
                      "in 64 bits)",
                      where, sh->dump()));
    if (bits % 8 != 0)
      throw FormatError(
          fmt::format("{}: {} elements of {} do not fill whole bytes", where, numel, t.dtype_name));
    const std::uint64_t need = bits / 8;

    auto off = entry.find("data_offsets");
    if (off == entry.end()) throw FormatError(where + ": missing \"data_offsets\"");
    if (!off->is_array() || off->size() != 2 || !as_unsigned((*off)[0]) || !as_unsigned((*off)[1]))
      throw FormatError(fmt::format(
          "{}: \"data_offsets\" must be an array of two integers >= 0 [begin, end], got {}", where,
          off->is_array() ? off->dump() : json_type(*off)));
    const std::uint64_t begin = *as_unsigned((*off)[0]);
    const std::uint64_t end = *as_unsigned((*off)[1]);
    if (end < begin)
      throw FormatError(
          fmt::format("{}: data_offsets [{}, {}] end before they begin", where, begin, end));
    if (end > data_size)
      throw FormatError(
          fmt::format("{}: data_offsets [{}, {}] reach past the end of the data region ({} bytes)",
                      where, begin, end, data_size));
    if (end - begin != need)
      throw FormatError(
          fmt::format("{}: data_offsets [{}, {}] give {} bytes, but dtype {} and shape {} need {}",
                      where, begin, end, end - begin, t.dtype_name, shape_string(t.shape), need));
    t.nbytes = static_cast<std::size_t>(need);
    t.data = header + header_len + begin;
    spans.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  // The tensors must tile [0, data_size) exactly (ref: safetensors Metadata::validate and the
  // MetadataIncompleteBuffer check).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  const Span* prev = nullptr;
  for (const auto& s : spans) {
    if (s.begin < cursor)
      throw FormatError(
          fmt::format("{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", file,
                      tensors_[s.index].name, s.begin, s.end, tensors_[prev->index].name,
                      prev->begin, prev->end));
    if (s.begin > cursor)
      throw FormatError(fmt::format(
          "{}: bytes [{}, {}) of the data region belong to no tensor (before tensor '{}'); the "
          "safetensors format forbids holes",
          file, cursor, s.begin, tensors_[s.index].name));
    cursor = s.end;
    prev = &s;
  }
  if (cursor != data_size)
    throw FormatError(fmt::format(
        "{}: the tensors cover {} bytes of the data region, but the file holds {} (trailing bytes "
        "after the last tensor)",
        file, cursor, data_size));

  // Keep tensors in data order.
  std::vector<TensorInfo> ordered;
  ordered.reserve(tensors_.size());
  for (const auto& s : spans) ordered.push_back(std::move(tensors_[s.index]));
  tensors_ = std::move(ordered);
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

std::vector<SafeTensorsFile> open_checkpoint(const std::filesystem::path& dir) {
  const CheckpointLayout layout = find_checkpoint(dir);
  if (layout.format != CheckpointFormat::Safetensors)
    throw FormatError(fmt::format("{}: the checkpoint is {}, not safetensors (open it with WeightStore)",
                                  dir.string(), layout.files.front().filename().string()));
  std::vector<SafeTensorsFile> files;
  files.reserve(layout.files.size());
  for (const auto& p : layout.files) files.push_back(SafeTensorsFile::open(p));
  if (!layout.index.empty()) {
    std::vector<const std::vector<TensorInfo>*> shards;
    for (const auto& f : files) shards.push_back(&f.tensors());
    check_shard_index(layout, shards);
  }
  return files;
}

}  // namespace xcaption
