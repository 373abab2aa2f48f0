#include "src/io/weights.hpp"

#include <map>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

WeightStore::WeightStore(WeightStore&&) noexcept = default;
WeightStore& WeightStore::operator=(WeightStore&&) noexcept = default;
WeightStore::~WeightStore() = default;

WeightStore WeightStore::open(const std::filesystem::path& dir) {
  WeightStore store;
  store.files_ = open_checkpoint(dir);
  return store;
}

const TensorInfo* WeightStore::find(const std::string& name, const SafeTensorsFile** file) const {
  for (const auto& f : files_)
    if (const TensorInfo* t = f.find(name)) {
      if (file) *file = &f;
      return t;
    }
  return nullptr;
}

void WeightStore::validate(const std::vector<ExpectedTensor>& table) const {
  const std::string where = files_.empty() ? "checkpoint" : files_.front().path().string();
  std::vector<std::string> missing;
  for (const auto& e : table) {
    const SafeTensorsFile* file = nullptr;
    const TensorInfo* t = find(e.name, &file);
    if (!t) {
      if (e.required) missing.push_back(e.name);
      continue;
    }
    if (!t->supported)
      throw FormatError(fmt::format("{}: tensor '{}': dtype {} is not supported (expected F32, F16 or BF16)",
                                    file->path().string(), e.name, t->dtype_name));
    if (t->shape != e.shape)
      throw ShapeError(fmt::format("{}: tensor '{}': expected {}, got {}", file->path().string(), e.name,
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
  const SafeTensorsFile* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  const TensorInfo& info = file->get(name);  // throws for unsupported dtypes
  if (!info.data)
    throw FormatError(fmt::format("{}: tensor '{}' read after the file was released", file->path().string(), name));
  FloatBuffer out(static_cast<std::size_t>(info.numel()));
  convert_to_f32(info.dtype, info.data, out.data(), out.size());
  file->evict(info);
  return out;
}

std::vector<std::int64_t> WeightStore::shape(const std::string& name) const {
  const TensorInfo* t = find(name, nullptr);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return t->shape;
}

DType WeightStore::dtype(const std::string& name) const {
  const SafeTensorsFile* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return file->get(name).dtype;
}

DType WeightStore::main_dtype() const {
  std::map<DType, std::size_t> bytes;
  for (const auto& f : files_)
    for (const auto& t : f.tensors())
      if (t.supported) bytes[t.dtype] += t.nbytes;
  DType best = DType::F32;
  std::size_t most = 0;
  for (const auto& [d, b] : bytes)
    if (b > most) most = b, best = d;
  return best;
}

std::string WeightStore::description() const {
  std::string s;
  for (const auto& f : files_) s += (s.empty() ? "" : ", ") + f.path().filename().string();
  return s;
}

std::string WeightStore::format() const { return "safetensors"; }

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& f : files_)
    for (const auto& t : f.tensors()) out.push_back(t.name);
  return out;
}

std::string WeightStore::stored_dtype(const std::string& name) const {
  const TensorInfo* t = find(name, nullptr);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  return t->dtype_name;
}

std::span<const std::byte> WeightStore::stored_bytes(const std::string& name) const {
  const SafeTensorsFile* file = nullptr;
  const TensorInfo* t = find(name, &file);
  if (!t) throw FormatError(fmt::format("checkpoint: tensor '{}' is missing", name));
  if (t->nbytes > 0 && !t->data)
    throw FormatError(fmt::format("{}: tensor '{}' read after the file was released", file->path().string(), name));
  return {static_cast<const std::byte*>(t->data), t->nbytes};
}

std::int64_t WeightStore::total_bytes() const {
  std::int64_t n = 0;
  for (const auto& f : files_) n += static_cast<std::int64_t>(f.file_size());
  return n;
}

std::int64_t WeightStore::total_parameters(const std::vector<ExpectedTensor>& table) const {
  std::int64_t n = 0;
  for (const auto& e : table)
    if (const TensorInfo* t = find(e.name, nullptr)) n += t->numel();
  return n;
}

void WeightStore::release() {
  for (auto& f : files_) f.release();
}

}  // namespace xcaption
