// Which weight files of a Hugging Face model folder to read, in the order transformers prefers
// them (ref: transformers modeling_utils.py, `from_pretrained`: model.safetensors, then
// model.safetensors.index.json, then pytorch_model.bin, then pytorch_model.bin.index.json).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "src/io/safetensors.hpp"  // TensorInfo

namespace xcaption {

enum class CheckpointFormat { Safetensors, PyTorch };

struct CheckpointLayout {
  CheckpointFormat format = CheckpointFormat::Safetensors;
  std::vector<std::filesystem::path> files;
  std::filesystem::path index;  // the *.index.json of a sharded checkpoint; empty for one file
};

/// The checkpoint of `dir`: `model.safetensors`; else the shards named by
/// `model.safetensors.index.json` (its "weight_map", each distinct file once, in order of first
/// appearance); else `pytorch_model.bin`; else the shards of `pytorch_model.bin.index.json`.
/// Throws FormatError when the folder has none of them (naming TF/Flax weights if present, which
/// xcaption does not read), or when an index is malformed, names a file outside the folder or a
/// missing shard.
CheckpointLayout find_checkpoint(const std::filesystem::path& dir);

/// find_checkpoint(dir).files.
std::vector<std::filesystem::path> checkpoint_files(const std::filesystem::path& dir);

/// For a sharded checkpoint, once its shards are open: checks that each tensor of the index's
/// weight_map is in the shard the index names, and that no tensor name appears in two shards.
/// `shards[i]` lists the tensors of `layout.files[i]`. Throws FormatError naming the index.
void check_shard_index(const CheckpointLayout& layout, const std::vector<const std::vector<TensorInfo>*>& shards);

}  // namespace xcaption
