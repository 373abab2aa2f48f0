// The Hugging Face configuration files of a vision-encoder-decoder folder, parsed into plain
// structs. Field names follow the JSON keys so a grep connects code and config.json.
// Defaults are those of transformers' config classes (ViTConfig, GPT2Config, GenerationConfig,
// ViTImageProcessor) for keys that are absent.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/backend/backend.hpp"

namespace xcaption {

/// ref: transformers ViTConfig.
struct VitConfig {
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  std::int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  Activation activation = Activation::GeluErf;  // derived from hidden_act
  double layer_norm_eps = 1e-12;
  std::int64_t image_size = 224;
  std::int64_t patch_size = 16;
  std::int64_t num_channels = 3;
  bool qkv_bias = true;
};

/// ref: transformers GPT2Config.
struct Gpt2Config {
  std::int64_t vocab_size = 50257;
  std::int64_t n_positions = 1024;
  std::int64_t n_embd = 768;
  std::int64_t n_layer = 12;
  std::int64_t n_head = 12;
  std::int64_t n_inner = 0;  // 0 = null in JSON = 4 * n_embd; resolved at parse time
  std::string activation_function = "gelu_new";
  Activation activation = Activation::GeluTanh;  // derived from activation_function
  double layer_norm_epsilon = 1e-5;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool reorder_and_upcast_attn = false;
  bool add_cross_attention = false;
  bool tie_word_embeddings = true;
  std::optional<std::int64_t> cross_attention_hidden_size;
};

/// ref: transformers GenerationConfig. Optional fields are "not set" in the files.
struct GenerationConfig {
  std::int64_t max_length = 20;
  std::optional<std::int64_t> max_new_tokens;
  std::int64_t min_length = 0;
  std::optional<std::int64_t> min_new_tokens;
  std::int64_t num_beams = 1;
  double length_penalty = 1.0;
  // HF's early_stopping is true, false or "never".
  enum class EarlyStopping { False, True, Never } early_stopping = EarlyStopping::False;
  std::int64_t no_repeat_ngram_size = 0;
  double repetition_penalty = 1.0;
  bool do_sample = false;
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_id;  // empty = none
  std::optional<std::int64_t> pad_token_id;
  std::optional<std::int64_t> decoder_start_token_id;  // unset: generate() falls back to bos
  // True when the files set max_length to something other than GenerationConfig's default 20.
  // This is HF's own test (`_prepare_generated_length` compares the value with 20), so an explicit
  // "max_length": 20 — which every config.json written by transformers 4.x carries in its decoder
  // sub-config — still means "untouched": 20 new tokens.
  bool max_length_set = false;
  // Sampling parameters (used only when do_sample).
  double temperature = 1.0;
  std::int64_t top_k = 50;
  double top_p = 1.0;
  // Settings that change greedy/beam output but that xcaption does not implement, found with a
  // non-default value, as "key=value (file)", e.g. "forced_eos_token_id=50256 (config.json)".
  // The caller decides whether to refuse or warn.
  std::vector<std::string> unsupported;
};

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

/// config.json of a VisionEncoderDecoderModel, plus the generation and preprocessor files.
struct ModelConfig {
  std::filesystem::path dir;
  std::string model_type;          // "vision-encoder-decoder"
  std::string encoder_model_type;  // "vit"
  std::string decoder_model_type;  // "gpt2"
  VitConfig encoder;
  Gpt2Config decoder;
  GenerationConfig generation;  // merged: generation_config.json, else config.json keys, else defaults
  PreprocessorConfig preprocessor;
  bool has_generation_config_file = false;
  bool has_preprocessor_config_file = false;
  // Derived: VisionEncoderDecoderModel adds the Linear `enc_to_dec_proj` (encoder hidden size ->
  // decoder n_embd) when the two sizes differ and decoder.cross_attention_hidden_size is null.
  bool enc_to_dec_proj = false;
};

/// Reads config.json, generation_config.json (optional) and preprocessor_config.json (optional:
/// defaults sized to the encoder's image_size when absent) from `dir`.
/// Generation settings follow transformers: generation_config.json alone when present (absent keys
/// take GenerationConfig defaults); otherwise GenerationConfig.from_model_config(config.json): the
/// top-level value when set and not equal to the default, else the decoder sub-config's value
/// (GPT2Config's own defaults included: bos = eos = 50256), else the default.
/// Accepted preprocessors: image_processor_type ViTImageProcessor / ViTImageProcessorFast (read
/// with the slow path's semantics) or feature_extractor_type ViTFeatureExtractor, or no type.
/// Throws FormatError (missing/malformed file, wrong JSON type for a key, naming file and key),
/// InputError (unsupported model_type, activation, processor or option value) or ShapeError
/// (inconsistent sizes: n_embd % n_head, hidden_size % num_attention_heads,
/// image_size % patch_size, a resize target different from image_size, non-positive sizes).
ModelConfig load_model_config(const std::filesystem::path& dir);

}  // namespace xcaption
