// Converting a model folder once: whatever weights xcaption reads (safetensors, shards, ...) into
// one model.safetensors, optionally in another float dtype, plus the folder's config and
// tokenizer files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace xcaption {

enum class StorageType { F32, F16, BF16 };

struct ConvertOptions {
  /// Dtype of the float tensors written; unset keeps each tensor's stored dtype. F16 and BF16
  /// round to nearest even. Tensors of other dtypes (integer buffers) are written as stored.
  std::optional<StorageType> dtype;
  /// Replace `out` when it exists (it must look like a model folder: empty, or holding
  /// config.json or model.safetensors, and must not contain the source).
  bool force = false;
  /// Called after each tensor is written: bytes of source tensors done so far and in all. It may
  /// throw to cancel: the temporary folder is removed and the exception propagates.
  std::function<void(std::int64_t done_bytes, std::int64_t total_bytes)> progress;
};

struct ConvertReport {
  std::filesystem::path source;                // the folder read (after resolving a Hub id)
  std::filesystem::path weights;               // out / "model.safetensors"
  std::int64_t tensors = 0, bytes = 0;         // tensors written and the file's size
  std::vector<std::string> dtypes;             // distinct dtypes written, e.g. {"F16", "I64"}
  std::vector<std::string> kept_as_stored;     // non-float tensors copied byte for byte
  std::vector<std::string> dropped;            // non-float tensors whose bytes the source could not give
  std::vector<std::string> copied_files;       // config.json, tokenizer.json, ...
};

/// Reads the model `source` (a folder, or ORG/NAME[@REVISION] of the Hugging Face cache, see
/// resolve_model) and writes `out`: model.safetensors (header "__metadata__" {"format": "pt"},
/// tensors ordered by element size then name so each is aligned to its element size, header
/// padded with spaces to a multiple of 8 bytes) and the config, generation, preprocessor and
/// tokenizer files the source has. Everything is written into a temporary folder beside `out`
/// and renamed into place at the end; on any failure the temporary folder is removed and `out`
/// is untouched. Throws FormatError (unreadable source, missing config.json, write failures,
/// `out` exists without `force`, `out`'s parent folder missing).
ConvertReport convert_model(const std::string& source, const std::filesystem::path& out,
                            const ConvertOptions& options = {});

}  // namespace xcaption
