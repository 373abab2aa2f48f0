#include "src/io/checkpoint_folder.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include "src/io/json_config.hpp"

namespace xcaption {

namespace {

namespace fs = std::filesystem;

struct ShardIndex {
  std::vector<std::string> shard_names;                  // distinct, first-appearance order
  std::vector<std::pair<std::string, std::string>> map;  // tensor -> shard file name
};

ShardIndex read_shard_index(const fs::path& index_path) {
  const std::string file = index_path.string();
  const std::string text = config::read_text_file(index_path, config::kMaxConfigJsonBytes);
  nlohmann::ordered_json root;
  try {
    root = config::parse_json<nlohmann::ordered_json>(text);
  } catch (const nlohmann::ordered_json::exception& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  } catch (const config::JsonTooDeep& e) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file, e.what()));
  }
  if (!root.is_object())
    throw FormatError(fmt::format("{}: expected a JSON object, got {}", file, root.type_name()));
  auto wm = root.find("weight_map");
  if (wm == root.end()) throw FormatError(fmt::format("{}: missing key 'weight_map'", file));
  if (!wm->is_object())
    throw FormatError(fmt::format("{}: key 'weight_map': expected an object, got {}", file, wm->type_name()));
  if (wm->empty()) throw FormatError(fmt::format("{}: key 'weight_map' is empty", file));
  ShardIndex index;
  std::set<std::string> seen;
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string())
      throw FormatError(fmt::format("{}: weight_map['{}']: expected a file name string, got {}", file, tensor,
                                    shard.type_name()));
    const std::string name = shard.get<std::string>();
    const fs::path rel(name);
    bool escapes = name.empty() || rel.is_absolute();
    for (const auto& part : rel)
      if (part == "..") escapes = true;
    if (escapes)
      throw FormatError(fmt::format("{}: weight_map['{}'] names '{}', which is not a file inside the model folder",
                                    file, tensor, name));
    if (seen.insert(name).second) index.shard_names.push_back(name);
    index.map.emplace_back(tensor, name);
  }
  return index;
}

CheckpointLayout sharded(const fs::path& dir, const fs::path& index_path, CheckpointFormat format) {
  std::error_code ec;
  const ShardIndex index = read_shard_index(index_path);
  CheckpointLayout layout;
  layout.format = format;
  layout.index = index_path;
  for (const auto& name : index.shard_names) {
    const fs::path shard = dir / name;
    if (!fs::is_regular_file(shard, ec))
      throw FormatError(fmt::format("{}: shard '{}' named in weight_map does not exist ({})", index_path.string(),
                                    name, shard.string()));
    layout.files.push_back(shard);
  }
  return layout;
}

}  // namespace

CheckpointLayout find_checkpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw FormatError(fmt::format("{}: not a model folder (no such directory)", dir.string()));

  if (const fs::path p = dir / "model.safetensors"; fs::is_regular_file(p, ec))
    return {CheckpointFormat::Safetensors, {p}, {}};
  if (const fs::path p = dir / "model.safetensors.index.json"; fs::is_regular_file(p, ec))
    return sharded(dir, p, CheckpointFormat::Safetensors);
  if (const fs::path p = dir / "pytorch_model.bin"; fs::is_regular_file(p, ec))
    return {CheckpointFormat::PyTorch, {p}, {}};
  if (const fs::path p = dir / "pytorch_model.bin.index.json"; fs::is_regular_file(p, ec))
    return sharded(dir, p, CheckpointFormat::PyTorch);

  // Name the weights that are there, so the message says what to do about them.
  static const char* const kOtherFormats[] = {"tf_model.h5", "flax_model.msgpack", "model.ckpt.index"};
  for (const char* other : kOtherFormats) {
    if (fs::exists(dir / other, ec))
      throw FormatError(fmt::format(
          "{}: found {} but no model.safetensors or pytorch_model.bin; xcaption reads safetensors and "
          "torch.save checkpoints, not TensorFlow or Flax weights. Convert the folder once, e.g. with "
          "transformers: VisionEncoderDecoderModel.from_pretrained(dir, from_tf=True).save_pretrained(dir, "
          "safe_serialization=True)", dir.string(), other));
  }
  throw FormatError(fmt::format("{}: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                                "pytorch_model.bin.index.json in the model folder", dir.string()));
}

std::vector<fs::path> checkpoint_files(const fs::path& dir) { return find_checkpoint(dir).files; }

void check_shard_index(const CheckpointLayout& layout, const std::vector<const std::vector<TensorInfo>*>& shards) {
  if (layout.index.empty()) return;
  const ShardIndex index = read_shard_index(layout.index);
  const std::string where = layout.index.string();
  // find_checkpoint() listed the shards in the order of index.shard_names.
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < index.shard_names.size() && i < shards.size(); ++i) by_name[index.shard_names[i]] = i;
  std::vector<std::set<std::string_view>> names(shards.size());
  for (std::size_t i = 0; i < shards.size(); ++i)
    for (const auto& t : *shards[i]) names[i].insert(t.name);
  for (const auto& [tensor, shard] : index.map) {
    auto it = by_name.find(shard);
    if (it == by_name.end() || !names[it->second].count(tensor))
      throw FormatError(fmt::format("{}: weight_map puts tensor '{}' in '{}', but that shard does not contain it",
                                    where, tensor, shard));
  }
  std::map<std::string_view, std::size_t> owner;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    for (const auto& t : *shards[i]) {
      auto [it, inserted] = owner.emplace(t.name, i);
      if (!inserted)
        throw FormatError(fmt::format("{}: tensor '{}' appears in two shards: {} and {}", where, t.name,
                                      layout.files[it->second].string(), layout.files[i].string()));
    }
  }
}

}  // namespace xcaption
