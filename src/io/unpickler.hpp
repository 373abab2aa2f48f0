// A restricted unpickler for the data.pkl of a torch.save archive: it understands the pickle
// opcodes and the handful of globals that a saved state dict uses, builds no Python object and
// runs no code. What it returns is a description: the storages the pickle refers to (persistent
// ids) and, for each key of the state dict, the view of a storage that is its tensor.
//
// ref: torch/serialization.py (_save: persistent_id returns ('storage', storage_type, key,
// location, numel); the pickle is written with protocol 2), torch/_tensor.py (_reduce_ex_internal:
// a dense CPU tensor pickles as _rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata])), torch/_utils.py (_rebuild_parameter,
// _rebuild_parameter_with_state), CPython Lib/pickle.py and pickletools.py (opcode encodings).
// The accepted opcodes, globals and limits are listed in docs/formats.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace xcaption {

/// A torch typed-storage class (torch.FloatStorage, ...): what one element is.
struct TorchStorageType {
  const char* name;        // "FloatStorage"
  unsigned element_size;   // bytes
  const char* dtype_name;  // safetensors-style name: "F32", "I64", ...
  bool supported;          // xcaption computes with it (F32, F16, BF16)
  DType dtype;             // meaningful only when supported
};

/// The storage class named `name` (without the "torch." module), or nullptr.
const TorchStorageType* find_storage_type(std::string_view name);

struct PickledStorage {
  std::string key;       // the record holding the bytes is <archive>/data/<key>
  const TorchStorageType* type = nullptr;
  std::string location;  // "cpu", "cuda:0", ...: where it was saved from (not used to load)
  std::uint64_t numel = 0;  // elements of `type`
};

struct PickledTensor {
  std::string name;         // the state dict key
  std::size_t storage = 0;  // index into PickledStateDict::storages
  std::int64_t storage_offset = 0;  // in elements
  std::vector<std::int64_t> size, stride;  // equal lengths; every value >= 0
};

struct PickledStateDict {
  std::vector<PickledStorage> storages;  // in order of first appearance, keys distinct
  std::vector<PickledTensor> tensors;    // in the dict's order, names distinct
};

/// Bounds on what a pickle may make the unpickler hold. A state dict with thousands of tensors
/// stays far below them.
struct PickleLimits {
  std::size_t max_objects = 1u << 22;        // values created (each tensor costs about 12)
  std::size_t max_stack = 1u << 20;          // values on the stack at once
  std::size_t max_marks = 1024;              // MARKs open at once
  std::size_t max_memo = 1u << 22;           // memo entries
  std::size_t max_string = 1u << 20;         // bytes of one string
  std::size_t max_string_total = 64u << 20;  // bytes of all strings
  std::size_t max_depth = 64;                // nesting of containers as they are built
  std::size_t max_rank = 64;                 // dimensions of a tensor
};

/// Interprets `pickle` (the bytes of data.pkl) as a torch state dict: a dict (or
/// collections.OrderedDict) from string keys to tensors. `file` names the archive in messages.
/// Throws FormatError "<file>: data.pkl: ..." for: an opcode a state dict does not use (named,
/// with its byte offset), a global outside the accepted set (named: "os.system"), a call of an
/// accepted global with arguments of the wrong kind, a persistent id that is not a storage
/// reference, a storage key declared twice with different types or sizes, a limit exceeded,
/// truncated data, a stack or mark underflow, a top-level object that is not a dict, a key that
/// is not a string, a value that is not a tensor, a duplicate key.
PickledStateDict unpickle_state_dict(std::span<const unsigned char> pickle, const std::string& file,
                                     const PickleLimits& limits = {});

}  // namespace xcaption
