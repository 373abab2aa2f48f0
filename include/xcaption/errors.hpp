// Typed errors thrown by the xcaption library. The library never prints or exits; the CLI maps
// each kind to an exit code (see src/cli/main.cpp and README "Exit codes").
#pragma once

#include <stdexcept>
#include <string>

namespace xcaption {

/// Base of every error the library throws. what() is a complete, user-facing sentence that names
/// the file, tensor or key involved and, where it applies, what was expected and what was found.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file is missing, unreadable, or its contents do not follow the expected format
/// (JSON syntax, safetensors header, tokenizer layout, image decoding).
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A tensor or configuration value has the wrong shape, dtype or size.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// The caller passed something invalid (an option out of range, an unknown model type).
class InputError : public Error {
 public:
  using Error::Error;
};

/// The compute backend failed (primitive creation, unsupported configuration).
class BackendError : public Error {
 public:
  using Error::Error;
};

}  // namespace xcaption
