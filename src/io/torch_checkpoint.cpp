#include "src/io/torch_checkpoint.hpp"

#include <cstring>
#include <limits>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <xcaption/errors.hpp>

#include "src/io/zip_archive.hpp"

namespace xcaption {

namespace {

std::uint64_t le64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// What a file that is not a zip archive is, as a sentence for the message.
[[noreturn]] void refuse_not_zip(const unsigned char* b, std::size_t size, const std::string& file) {
  // ref: torch/serialization.py MAGIC_NUMBER 0x1950a86a20f9469cfc6c, pickled by _legacy_save as
  // PROTO 2, LONG1 of 10 bytes (little-endian).
  static const unsigned char kLegacyMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (size >= 10) {
    const std::uint64_t n = le64(b);
    if (n >= 2 && n <= size - 8 && b[8] == '{')
      throw FormatError(fmt::format(
          "{}: this is a safetensors file, not a torch.save archive, despite its name; rename it to "
          "model.safetensors (or, for a shard, give it a .safetensors name and use "
          "model.safetensors.index.json)", file));
  }
  if (size >= 2 + sizeof kLegacyMagic && b[0] == 0x80 && std::memcmp(b + 2, kLegacyMagic, sizeof kLegacyMagic) == 0)
    throw FormatError(fmt::format(
        "{}: a legacy torch.save file (the format of torch < 1.6: a pickle followed by raw storages), "
        "which xcaption does not read; re-save it once with torch >= 1.6, "
        "torch.save(torch.load(path, map_location='cpu'), path), which writes the zip format, or save it as "
        "safetensors (save_pretrained(dir, safe_serialization=True))", file));
  if (size >= 262 && std::memcmp(b + 257, "ustar", 5) == 0)
    throw FormatError(fmt::format(
        "{}: a tar archive (the torch.save format of torch < 0.4), which xcaption does not read; re-save it "
        "with torch >= 1.6: torch.save(torch.load(path, map_location='cpu'), path)", file));
  if (b[0] == 0x80)
    throw FormatError(fmt::format(
        "{}: a bare pickle, not a torch.save zip archive; xcaption reads the zip format of torch >= 1.6 "
        "(re-save with torch.save) or safetensors", file));
  std::string head;
  for (std::size_t i = 0; i < std::min<std::size_t>(size, 4); ++i) head += fmt::format("{}{:02x}", i ? " " : "", b[i]);
  throw FormatError(fmt::format(
      "{}: not a torch.save zip archive (it starts with bytes {}, a zip archive with 50 4b 03 04)", file, head));
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) { return __builtin_add_overflow(a, b, out); }

float element_to_f32(DType dtype, const unsigned char* p) {
  float f;
  convert_to_f32(dtype, p, &f, 1);
  return f;
}

}  // namespace

TorchArchive read_torch_archive(const unsigned char* b, std::size_t size, const std::string& file) {
  if (size == 0) throw FormatError(fmt::format("{}: the file is empty (0 bytes), not a torch.save archive", file));
  const bool zip_magic = size >= 4 && b[0] == 'P' && b[1] == 'K' &&
                         ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6));
  if (!zip_magic) refuse_not_zip(b, size, file);
  const ZipArchive zip = ZipArchive::parse(b, size, file);

  TorchArchive out;
  out.zip64 = zip.zip64();
  // The records live in one folder whose name the writer chose: find its data.pkl.
  const ZipEntry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    const std::string_view name = e.name;
    const auto slash = name.find('/');
    if (slash == std::string_view::npos || slash == 0 || name.substr(slash + 1) != "data.pkl") continue;
    if (pkl)
      throw FormatError(fmt::format("{}: holds two pickles, '{}' and '{}': not a single torch.save archive", file,
                                    pkl->name, e.name));
    pkl = &e;
  }
  if (!pkl)
    throw FormatError(fmt::format("{}: a zip archive without a <folder>/data.pkl record, so not written by "
                                  "torch.save ({} entries)", file, zip.entries().size()));
  out.prefix = pkl->name.substr(0, pkl->name.size() - std::string_view("data.pkl").size());
  if (zip.find(out.prefix + "constants.pkl"))
    throw FormatError(fmt::format("{}: a TorchScript archive (torch.jit.save: it has {}constants.pkl and code), "
                                  "not a state dict saved by torch.save; xcaption runs no TorchScript",
                                  file, out.prefix));

  if (const ZipEntry* bo = zip.find(out.prefix + "byteorder")) {
    // ref: torch/serialization.py _save writes sys.byteorder; _load byte-swaps when it is "big".
    const auto bytes = zip.data(*bo);
    const std::string_view order(reinterpret_cast<const char*>(bytes.data()), std::min<std::size_t>(bytes.size(), 16));
    if (order == "big")
      throw FormatError(fmt::format("{}: the byteorder record says 'big': the storages are big-endian, and xcaption "
                                    "reads little-endian archives only (re-save the weights on a little-endian "
                                    "machine, or as safetensors)", file));
    if (order != "little")
      throw FormatError(fmt::format("{}: the byteorder record holds '{}', expected 'little'", file,
                                    bytes.size() > 16 ? "(more than 16 bytes)" : std::string(order)));
  }

  const auto pickle = zip.data(*pkl);
  // A recorded CRC of 0 means none was computed (torch.serialization.set_crc32_options(False)
  // writes 0; torch.load does not check): only a recorded one is verified.
  if (pkl->crc32 != 0) zip.check_crc(*pkl);
  PickledStateDict sd = unpickle_state_dict(pickle, file);

  // Storages: each record present, stored, and exactly numel x element size bytes.
  out.storage_data.assign(sd.storages.size(), nullptr);
  for (std::size_t i = 0; i < sd.storages.size(); ++i) {
    const PickledStorage& s = sd.storages[i];
    const std::string record = out.prefix + "data/" + s.key;
    const ZipEntry* e = zip.find(record);
    if (!e) {
      std::string user;
      for (const auto& t : sd.tensors)
        if (t.storage == i) {
          user = fmt::format(" (the storage of tensor '{}')", t.name);
          break;
        }
      throw FormatError(fmt::format("{}: storage record '{}'{} is missing from the archive", file, record, user));
    }
    std::uint64_t need = 0;
    if (mul_overflows(s.numel, s.type->element_size, &need) || need != e->size)
      throw FormatError(fmt::format("{}: storage record '{}' holds {} bytes, but the pickle declares {} elements "
                                    "of torch.{} ({} bytes each)", file, record, e->size, s.numel, s.type->name,
                                    s.type->element_size));
    out.storage_data[i] = zip.data(*e).data();
  }

  // Tensors: every view checked against its storage before anything reads it.
  out.tensors.reserve(sd.tensors.size());
  out.layouts.reserve(sd.tensors.size());
  for (auto& t : sd.tensors) {
    const PickledStorage& s = sd.storages[t.storage];
    const std::uint64_t es = s.type->element_size;
    const std::string where = fmt::format("{}: tensor '{}'", file, t.name);
    std::uint64_t numel = 1;
    bool overflow = false;
    for (auto d : t.size) overflow = overflow || mul_overflows(numel, static_cast<std::uint64_t>(d), &numel);
    std::uint64_t nbytes = 0;
    if (overflow || mul_overflows(numel, es, &nbytes) ||
        numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw FormatError(fmt::format("{}: size {} overflows (its element count or byte size does not fit in 64 bits)",
                                    where, shape_string(t.size)));
    const auto offset = static_cast<std::uint64_t>(t.storage_offset);
    if (offset > s.numel)
      throw FormatError(fmt::format("{}: storage_offset {} lies past the end of storage '{}' ({} elements)", where,
                                    offset, s.key, s.numel));
    std::uint64_t last = offset;  // the highest element the view touches
    if (numel > 0) {
      for (std::size_t k = 0; k < t.size.size(); ++k) {
        std::uint64_t reach = 0;
        if (mul_overflows(static_cast<std::uint64_t>(t.size[k] - 1), static_cast<std::uint64_t>(t.stride[k]), &reach) ||
            add_overflows(last, reach, &last)) {
          overflow = true;
          break;
        }
      }
      if (overflow || last >= s.numel)
        throw FormatError(fmt::format(
            "{}: size {}, stride {} and storage_offset {} reach {} of storage '{}', which holds {} elements", where,
            shape_string(t.size), shape_string(t.stride), offset,
            overflow ? std::string("past 2^64 elements") : fmt::format("element {}", last), s.key, s.numel));
    }
    TorchArchive::Layout layout;
    layout.storage = t.storage;
    layout.stride = t.stride;
    // Row-major and dense (strides of size-1 dimensions do not matter, as in torch's is_contiguous).
    std::uint64_t expect = 1;
    for (std::size_t k = t.size.size(); k-- > 0;) {
      if (t.size[k] != 1 && static_cast<std::uint64_t>(t.stride[k]) != expect) layout.contiguous = false;
      expect *= static_cast<std::uint64_t>(t.size[k]);  // <= numel: cannot overflow
    }
    TensorInfo info;
    info.name = std::move(t.name);
    info.shape = t.size;
    info.supported = s.type->supported;
    info.dtype = s.type->dtype;
    info.dtype_name = s.type->dtype_name;
    info.data = out.storage_data[t.storage] + offset * es;
    info.nbytes = numel == 0 ? 0 : static_cast<std::size_t>(layout.contiguous ? nbytes : (last - offset + 1) * es);
    out.tensors.push_back(std::move(info));
    out.layouts.push_back(std::move(layout));
  }
  out.storages = std::move(sd.storages);
  return out;
}

TorchCheckpointFile TorchCheckpointFile::open(const std::filesystem::path& path) {
  TorchCheckpointFile f;
  f.path_ = path;
  f.map_ = MappedFile::open(path);
  f.archive_ = read_torch_archive(f.map_.data(), f.map_.size(), path.string());
  for (std::size_t i = 0; i < f.archive_.tensors.size(); ++i) f.index_.emplace(f.archive_.tensors[i].name, i);
  return f;
}

const TensorInfo* TorchCheckpointFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &archive_.tensors[it->second];
}

const TensorInfo& TorchCheckpointFile::get(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) throw FormatError(fmt::format("{}: tensor '{}' is missing", path_.string(), name));
  if (!t->supported)
    throw FormatError(fmt::format("{}: tensor '{}' has dtype {}, which xcaption cannot compute with (supported: "
                                  "F32, F16, BF16)", path_.string(), name, t->dtype_name));
  return *t;
}

std::size_t TorchCheckpointFile::index_of(const TensorInfo& tensor) const {
  const auto* base = archive_.tensors.data();
  if (&tensor < base || &tensor >= base + archive_.tensors.size())
    throw FormatError(fmt::format("{}: tensor '{}' is not one of this file's", path_.string(), tensor.name));
  return static_cast<std::size_t>(&tensor - base);
}

bool TorchCheckpointFile::contiguous(const TensorInfo& tensor) const {
  return archive_.layouts[index_of(tensor)].contiguous;
}

void TorchCheckpointFile::read_f32(const TensorInfo& tensor, float* dst) const {
  const TorchArchive::Layout& layout = archive_.layouts[index_of(tensor)];
  if (!tensor.supported) get(tensor.name);  // throws the dtype message
  if (!tensor.data)
    throw FormatError(fmt::format("{}: tensor '{}' read after the file was released", path_.string(), tensor.name));
  xcaption::read_f32(tensor, layout, dst);
}

void read_f32(const TensorInfo& tensor, const TorchArchive::Layout& layout, float* dst) {
  const auto numel = static_cast<std::size_t>(tensor.numel());
  if (numel == 0) return;
  const auto* src = static_cast<const unsigned char*>(tensor.data);
  if (layout.contiguous) {
    convert_to_f32(tensor.dtype, src, dst, numel);
    return;
  }
  // Strided gather: an odometer over the outer dimensions, a loop over the innermost one.
  const std::size_t es = dtype_size(tensor.dtype);
  const std::size_t rank = tensor.shape.size();
  const std::int64_t inner = tensor.shape[rank - 1];
  const std::size_t inner_step = static_cast<std::size_t>(layout.stride[rank - 1]) * es;
  std::vector<std::int64_t> idx(rank, 0);
  // Byte offset of the current row's first element. Moving along a size-1 dimension may wrap
  // it (unsigned) for one step; it is restored before any element is read.
  std::size_t at = 0;
  float* out = dst;
  for (;;) {
    // Offsets are formed only for elements that exist (all inside the checked span).
    for (std::int64_t j = 0; j < inner; ++j)
      *out++ = element_to_f32(tensor.dtype, src + at + static_cast<std::size_t>(j) * inner_step);
    std::size_t k = rank - 1;
    for (;;) {
      if (k == 0) return;
      --k;
      at += static_cast<std::size_t>(layout.stride[k]) * es;
      if (++idx[k] < tensor.shape[k]) break;
      at -= static_cast<std::size_t>(layout.stride[k] * tensor.shape[k]) * es;
      idx[k] = 0;
    }
  }
}

void TorchCheckpointFile::release() {
  map_.release();
  for (auto& t : archive_.tensors) t.data = nullptr;
  for (auto& d : archive_.storage_data) d = nullptr;
}

void TorchCheckpointFile::evict(const TensorInfo& tensor) const {
  if (tensor.data) map_.evict(tensor.data, tensor.nbytes);
}

}  // namespace xcaption
