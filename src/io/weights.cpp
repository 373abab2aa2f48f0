#include "src/io/weights.hpp"

#include <map>
#include <type_traits>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/io/checkpoint_folder.hpp"

namespace xcaption {

WeightStore::WeightStore(WeightStore&&) noexcept = default;
WeightStore& WeightStore::operator=(WeightStore&&) noexcept = default;
WeightStore::~WeightStore() = default;

namespace {

const std::filesystem::path& path_of(const std::variant<SafeTensorsFile, TorchCheckpointFile>& f) {
  return std::visit([](const auto& file) -> const std::filesystem::path& { return file.path(); }, f);
}

}  // namespace

WeightStore WeightStore::open(const std::filesystem::path& dir) {
  const CheckpointLayout layout = find_checkpoint(dir);
  WeightStore store;
  store.files_.reserve(layout.files.size());
  for (const auto& p : layout.files) {
    if (layout.format == CheckpointFormat::Safetensors) store.files_.emplace_back(SafeTensorsFile::open(p));
    else store.files_.emplace_back(TorchCheckpointFile::open(p));
  }
  if (!layout.index.empty()) {
    std::vector<const std::vector<TensorInfo>*> shards;
    for (const auto& f : store.files_)
      shards.push_back(std::visit([](const auto& file) { return &file.tensors(); }, f));
    check_shard_index(layout, shards);
  }
  return store;
}

const TensorInfo* WeightStore::find(const std::string& name, const File** file) const {
  for (const auto& f : files_)
    if (const TensorInfo* t = std::visit([&](const auto& x) { return x.find(name); }, f)) {
      if (file) *file = &f;
      return t;
    }
  return nullptr;
}

void WeightStore::validate(const std::vector<ExpectedTensor>& table) const {
  const std::string where = files_.empty() ? "checkpoint" : path_of(files_.front()).string();
  std::vector<std::string> missing;
  for (const auto& e : table) {
    const File* file = nullptr;
    const TensorInfo* t = find(e.name, &file);
    if (!t) {
      if (e.required) missing.push_back(e.name);
      continue;
    }
    if (!t->supported)
      throw FormatError(fmt::format("{}: tensor '{}': dtype {} is not supported (expected F32, F16 or BF16)",
                                    path_of(*file).string(), e.name, t->dtype_name));
    if (t->shape != e.shape)
      throw ShapeError(fmt::format("{}: tensor '{}': expected {}, got {}", path_of(*file).string(), e.name,
                                   shape_string(e.shape), shape_string(t->shape)));
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", '" : "'") + missing[i] + "'";
    if (missing.size() > 5) list += fmt::format(" and {} more", missing.size() - 5);
    throw FormatError(fmt::format("{}: {} expected tensor{} missing: {}", where, missing.size(),
                                  missing.size() == 1 ? " is" : "s are", list));
  }
}

bool WeightStore::has(const std::string& name) const { return find(name, nullptr) != nullptr; }

FloatBuffer WeightStore::load(const std::string& name) const {
  const File* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return std::visit(
      [&](const auto& f) {
        const TensorInfo& info = f.get(name);  // throws for unsupported dtypes
        if (!info.data)
          throw FormatError(fmt::format("{}: tensor '{}' read after the file was released", f.path().string(), name));
        FloatBuffer out(static_cast<std::size_t>(info.numel()));
        if constexpr (std::is_same_v<std::decay_t<decltype(f)>, TorchCheckpointFile>)
          f.read_f32(info, out.data());
        else
          convert_to_f32(info.dtype, info.data, out.data(), out.size());
        f.evict(info);
        return out;
      },
      *file);
}

std::vector<std::int64_t> WeightStore::shape(const std::string& name) const {
  const TensorInfo* t = find(name, nullptr);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return t->shape;
}

DType WeightStore::dtype(const std::string& name) const {
  const File* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return std::visit([&](const auto& f) { return f.get(name).dtype; }, *file);
}

DType WeightStore::main_dtype() const {
  std::map<DType, std::size_t> bytes;
  for (const auto& f : files_)
    for (const auto& t : std::visit([](const auto& x) -> const std::vector<TensorInfo>& { return x.tensors(); }, f))
      if (t.supported) bytes[t.dtype] += static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype);
  DType best = DType::F32;
  std::size_t most = 0;
  for (const auto& [d, b] : bytes)
    if (b > most) most = b, best = d;
  return best;
}

std::string WeightStore::description() const {
  std::string s;
  for (const auto& f : files_) s += (s.empty() ? "" : ", ") + path_of(f).filename().string();
  return s;
}

std::string WeightStore::format() const {
  if (!files_.empty() && std::holds_alternative<TorchCheckpointFile>(files_.front())) return "pytorch (zip)";
  return "safetensors";
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& f : files_)
    for (const auto& t : std::visit([](const auto& x) -> const std::vector<TensorInfo>& { return x.tensors(); }, f))
      out.push_back(t.name);
  return out;
}

std::string WeightStore::stored_dtype(const std::string& name) const {
  const TensorInfo* t = find(name, nullptr);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return t->dtype_name;
}

std::span<const std::byte> WeightStore::stored_bytes(const std::string& name) const {
  const File* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  if (t->nbytes > 0 && !t->data)
    throw FormatError(fmt::format("{}: tensor '{}' read after the file was released", path_of(*file).string(), name));
  // A strided view of a torch storage has no contiguous bytes of its own.
  if (const auto* torch = std::get_if<TorchCheckpointFile>(file); torch && !torch->contiguous(*t)) return {};
  return {static_cast<const std::byte*>(t->data), t->nbytes};
}

std::int64_t WeightStore::total_bytes() const {
  std::int64_t n = 0;
  for (const auto& f : files_) n += static_cast<std::int64_t>(std::visit([](const auto& x) { return x.file_size(); }, f));
  return n;
}

void WeightStore::require_layers(const std::string& where, std::int64_t layers) const {
  // Some slack, so that a small inconsistent folder still gets validate()'s precise message (a
  // missing or mistyped tensor); what this refuses is a table far beyond the file.
  constexpr std::int64_t kSlack = 64;
  const auto tensors = static_cast<std::int64_t>(names().size());
  if (layers > tensors + kSlack)
    throw ShapeError(fmt::format("{}: {} layers, but the checkpoint holds only {} tensors (config.json and the "
                                 "weights disagree)", where, layers, tensors));
}

void WeightStore::require_elements(const std::string& where, const std::string& what, double elements) const {
  // Tables up to 2^20 values pass whatever the file (validate() then names the tensor precisely);
  // what this refuses is a table far beyond the file.
  constexpr double kSlack = 1 << 20;
  const auto bytes = static_cast<double>(total_bytes());
  if (elements > kSlack && elements * 2 > bytes)
    throw ShapeError(fmt::format("{}: implies {} of {:.0f} values, more than the {:.0f}-byte checkpoint can hold "
                                 "(config.json and the weights disagree)", where, what, elements, bytes));
}

std::int64_t WeightStore::total_parameters(const std::vector<ExpectedTensor>& table) const {
  std::int64_t n = 0;
  for (const auto& e : table)
    if (const TensorInfo* t = find(e.name, nullptr)) n += t->numel();
  return n;
}

void WeightStore::release() {
  for (auto& f : files_) std::visit([](auto& x) { x.release(); }, f);
}

}  // namespace xcaption
