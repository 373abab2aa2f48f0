// preprocessor_config.json: the image processors that resize straight to a fixed size, rescale
// and normalize (ViTImageProcessor, BlipImageProcessor, ...), read with the slow PIL path's
// semantics (ref: transformers image_processing_vit.py, get_size_dict(default_to_square=True)).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "src/io/json_config.hpp"

namespace xcaption {

/// ref: transformers ViTImageProcessor (slow, PIL path).
struct PreprocessorConfig {
  bool do_resize = true;
  std::int64_t height = 224;
  std::int64_t width = 224;
  int resample = 2;  // PIL filter id: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::vector<float> image_mean{0.5f, 0.5f, 0.5f};
  std::vector<float> image_std{0.5f, 0.5f, 0.5f};
};

/// The processor classes a family accepts in `image_processor_type` / `feature_extractor_type`
/// (absent types are accepted), and what xcaption implements, for the message.
struct ProcessorKinds {
  std::vector<std::string> image_processor_types;
  std::vector<std::string> feature_extractor_types;
  std::string implemented;
};

/// Parses a preprocessor_config.json object over `defaults` (the processor class's defaults).
/// Throws FormatError / InputError / ShapeError naming the file and key.
PreprocessorConfig parse_preprocessor(const config::Node& n, const ProcessorKinds& kinds,
                                      PreprocessorConfig defaults);

/// `dir`/preprocessor_config.json over `defaults`, or `defaults` when the file is absent; then a
/// resize target other than the encoder's input (height x width) is a ShapeError (the encoders'
/// position embeddings take no other size). `from_file` (optional) tells whether the file exists.
PreprocessorConfig load_preprocessor_config(const std::filesystem::path& dir, const ProcessorKinds& kinds,
                                            PreprocessorConfig defaults, std::int64_t height, std::int64_t width,
                                            bool* from_file = nullptr);

}  // namespace xcaption
