// config.json / generation_config.json / preprocessor_config.json parsing: transformers' defaults,
// the precedence of generation settings, every rejection, and the public vit-gpt2 configs.
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <xcaption/errors.hpp>

#include "models/vit_gpt2/config.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using json = nlohmann::json;
using xcaption::Activation;
using xcaption::FormatError;
using xcaption::GenerationConfig;
using xcaption::InputError;
using xcaption::load_vit_gpt2_config;
using xcaption::VitGpt2Config;
using xcaption::ShapeError;

namespace {

using xcaption::test::TempDir;

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

// The smallest config.json the loader accepts: model types and cross-attention only.
json minimal_config() {
  return {{"model_type", "vision-encoder-decoder"},
          {"encoder", {{"model_type", "vit"}}},
          {"decoder", {{"model_type", "gpt2"}, {"add_cross_attention", true}}}};
}

struct Folder {
  TempDir dir;
  explicit Folder(const json& config) { write("config.json", config); }
  void write(const std::string& name, const json& j) { write_text(dir.path / name, j.dump(2)); }
  VitGpt2Config load() const { return load_vit_gpt2_config(dir.path); }
};

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no exception was thrown");
  return {};
}

template <class E>
std::string load_error(const json& config) {
  Folder f(config);
  return message_of<E>([&] { f.load(); });
}

}  // namespace

TEST_CASE("config: a minimal config.json takes transformers' defaults", "[config]") {
  Folder f(minimal_config());
  const VitGpt2Config mc = f.load();
  CHECK(mc.dir == f.dir.path);
  CHECK(xcaption::is_vit_gpt2_config(minimal_config()));

  // ViTConfig defaults.
  CHECK(mc.encoder.hidden_size == 768);
  CHECK(mc.encoder.num_hidden_layers == 12);
  CHECK(mc.encoder.num_attention_heads == 12);
  CHECK(mc.encoder.intermediate_size == 3072);
  CHECK(mc.encoder.hidden_act == "gelu");
  CHECK(mc.encoder.activation == Activation::GeluErf);
  CHECK(mc.encoder.layer_norm_eps == 1e-12);
  CHECK(mc.encoder.image_size == 224);
  CHECK(mc.encoder.patch_size == 16);
  CHECK(mc.encoder.num_channels == 3);
  CHECK(mc.encoder.qkv_bias);

  // GPT2Config defaults.
  CHECK(mc.decoder.vocab_size == 50257);
  CHECK(mc.decoder.n_positions == 1024);
  CHECK(mc.decoder.n_embd == 768);
  CHECK(mc.decoder.n_layer == 12);
  CHECK(mc.decoder.n_head == 12);
  CHECK(mc.decoder.n_inner == 3072);  // None -> 4 * n_embd
  CHECK(mc.decoder.activation_function == "gelu_new");
  CHECK(mc.decoder.activation == Activation::GeluTanh);
  CHECK(mc.decoder.layer_norm_epsilon == 1e-5);
  CHECK(mc.decoder.scale_attn_weights);
  CHECK_FALSE(mc.decoder.scale_attn_by_inverse_layer_idx);
  CHECK_FALSE(mc.decoder.reorder_and_upcast_attn);
  CHECK(mc.decoder.add_cross_attention);
  CHECK(mc.decoder.tie_word_embeddings);
  CHECK_FALSE(mc.decoder.cross_attention_hidden_size.has_value());
  CHECK_FALSE(mc.enc_to_dec_proj);

  // GenerationConfig defaults, with GPT2Config's bos/eos (50256) reaching them through the
  // decoder sub-config.
  const GenerationConfig& g = mc.generation;
  CHECK_FALSE(mc.has_generation_config_file);
  CHECK(g.max_length == 20);
  CHECK_FALSE(g.max_length_set);
  CHECK_FALSE(g.max_new_tokens.has_value());
  CHECK(g.min_length == 0);
  CHECK_FALSE(g.min_new_tokens.has_value());
  CHECK(g.num_beams == 1);
  CHECK(g.length_penalty == 1.0);
  CHECK(g.early_stopping == GenerationConfig::EarlyStopping::False);
  CHECK(g.no_repeat_ngram_size == 0);
  CHECK(g.repetition_penalty == 1.0);
  CHECK_FALSE(g.do_sample);
  CHECK(g.temperature == 1.0);
  CHECK(g.top_k == 50);
  CHECK(g.top_p == 1.0);
  CHECK(g.bos_token_id == std::optional<std::int64_t>(50256));
  CHECK(g.eos_token_id == std::vector<std::int64_t>{50256});
  CHECK_FALSE(g.pad_token_id.has_value());
  CHECK_FALSE(g.decoder_start_token_id.has_value());
  CHECK(g.unsupported.empty());

  // ViTImageProcessor defaults, sized to the encoder since there is no preprocessor file.
  CHECK_FALSE(mc.has_preprocessor_config_file);
  CHECK(mc.preprocessor.do_resize);
  CHECK(mc.preprocessor.height == 224);
  CHECK(mc.preprocessor.width == 224);
  CHECK(mc.preprocessor.resample == 2);
  CHECK(mc.preprocessor.do_rescale);
  CHECK(mc.preprocessor.rescale_factor == 1.0 / 255.0);
  CHECK(mc.preprocessor.do_normalize);
  CHECK(mc.preprocessor.image_mean == std::vector<float>{0.5f, 0.5f, 0.5f});
  CHECK(mc.preprocessor.image_std == std::vector<float>{0.5f, 0.5f, 0.5f});
}

TEST_CASE("config: explicit model values override the defaults", "[config]") {
  json c = minimal_config();
  c["encoder"].update({{"hidden_size", 384},
                       {"num_hidden_layers", 6},
                       {"num_attention_heads", 6},
                       {"intermediate_size", 1536},
                       {"layer_norm_eps", 1e-6},
                       {"image_size", 384},
                       {"patch_size", 32},
                       {"qkv_bias", false},
                       {"hidden_act", "gelu_new"}});
  c["decoder"].update({{"vocab_size", 1000},
                       {"n_positions", 64},
                       {"n_embd", 256},
                       {"n_layer", 2},
                       {"n_head", 4},
                       {"n_inner", 512},
                       {"activation_function", "gelu"},
                       {"layer_norm_epsilon", 1e-3},
                       {"scale_attn_weights", false},
                       {"scale_attn_by_inverse_layer_idx", true},
                       {"reorder_and_upcast_attn", true},
                       {"tie_word_embeddings", false}});
  Folder f(c);
  const VitGpt2Config mc = f.load();
  CHECK(mc.encoder.hidden_size == 384);
  CHECK(mc.encoder.num_hidden_layers == 6);
  CHECK(mc.encoder.num_attention_heads == 6);
  CHECK(mc.encoder.intermediate_size == 1536);
  CHECK(mc.encoder.layer_norm_eps == 1e-6);
  CHECK(mc.encoder.image_size == 384);
  CHECK(mc.encoder.patch_size == 32);
  CHECK_FALSE(mc.encoder.qkv_bias);
  CHECK(mc.encoder.activation == Activation::GeluTanh);
  CHECK(mc.decoder.vocab_size == 1000);
  CHECK(mc.decoder.n_positions == 64);
  CHECK(mc.decoder.n_embd == 256);
  CHECK(mc.decoder.n_layer == 2);
  CHECK(mc.decoder.n_head == 4);
  CHECK(mc.decoder.n_inner == 512);
  CHECK(mc.decoder.activation == Activation::GeluErf);
  CHECK(mc.decoder.layer_norm_epsilon == 1e-3);
  CHECK_FALSE(mc.decoder.scale_attn_weights);
  CHECK(mc.decoder.scale_attn_by_inverse_layer_idx);
  CHECK(mc.decoder.reorder_and_upcast_attn);
  CHECK_FALSE(mc.decoder.tie_word_embeddings);
  CHECK(mc.enc_to_dec_proj);             // 384 != 256 and no cross_attention_hidden_size
  CHECK(mc.preprocessor.height == 384);  // no preprocessor file: the encoder's image_size
  CHECK(mc.generation.eos_token_id ==
        std::vector<std::int64_t>{50256});  // not checked against vocab
  // n_inner null means 4 * n_embd of the file, not of the default.
  c["decoder"]["n_inner"] = nullptr;
  Folder g(c);
  CHECK(g.load().decoder.n_inner == 1024);
}

TEST_CASE("config: GPT2Config attribute_map aliases", "[config]") {
  json c = minimal_config();
  c["decoder"].update({{"hidden_size", 512},
                       {"num_attention_heads", 8},
                       {"num_hidden_layers", 3},
                       {"max_position_embeddings", 128},
                       {"n_embd", 768}});
  Folder f(c);
  const VitGpt2Config mc = f.load();
  CHECK(mc.decoder.n_embd == 512);  // the alias is applied after the canonical key
  CHECK(mc.decoder.n_head == 8);
  CHECK(mc.decoder.n_layer == 3);
  CHECK(mc.decoder.n_positions == 128);
}

TEST_CASE("config: image_size and patch_size as [h, w]", "[config]") {
  json c = minimal_config();
  c["encoder"]["image_size"] = {384, 384};
  c["encoder"]["patch_size"] = {32, 32};
  Folder f(c);
  const VitGpt2Config mc = f.load();
  CHECK(mc.encoder.image_size == 384);
  CHECK(mc.encoder.patch_size == 32);
  c["encoder"]["image_size"] = {384, 224};
  CHECK_THAT(load_error<InputError>(c),
             Contains("config.json: key 'encoder.image_size': non-square size [384, 224]"));
}

TEST_CASE("config: activation names", "[config]") {
  for (const char* name : {"gelu", "gelu_python"}) {
    json c = minimal_config();
    c["encoder"]["hidden_act"] = name;
    c["decoder"]["activation_function"] = name;
    Folder f(c);
    const VitGpt2Config mc = f.load();
    CHECK(mc.encoder.activation == Activation::GeluErf);
    CHECK(mc.decoder.activation == Activation::GeluErf);
  }
  for (const char* name : {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate"}) {
    json c = minimal_config();
    c["encoder"]["hidden_act"] = name;
    c["decoder"]["activation_function"] = name;
    Folder f(c);
    const VitGpt2Config mc = f.load();
    CHECK(mc.encoder.activation == Activation::GeluTanh);
    CHECK(mc.decoder.activation == Activation::GeluTanh);
    CHECK(mc.decoder.activation_function == name);
  }
  for (const char* name : {"relu", "silu", "quick_gelu", "tanh"}) {
    json c = minimal_config();
    c["decoder"]["activation_function"] = name;
    CHECK_THAT(load_error<InputError>(c),
               Contains("config.json: key 'decoder.activation_function': activation '" +
                        std::string(name) + "' is unsupported"));
    json e = minimal_config();
    e["encoder"]["hidden_act"] = name;
    CHECK_THAT(load_error<InputError>(e),
               Contains("key 'encoder.hidden_act'") && Contains("unsupported"));
  }
}

TEST_CASE("config: model types and cross-attention are required", "[config]") {
  json c = minimal_config();
  c["model_type"] = "encoder-decoder";
  CHECK_THAT(
      load_error<InputError>(c),
      Contains("config.json: key 'model_type': model type \"encoder-decoder\" is unsupported; "
               "expected \"vision-encoder-decoder\""));
  c = minimal_config();
  c.erase("model_type");
  CHECK_THAT(load_error<InputError>(c), Contains("config.json: key 'model_type': missing"));
  c = minimal_config();
  c["encoder"]["model_type"] = "deit";
  CHECK_THAT(load_error<InputError>(c),
             Contains("config.json: key 'encoder.model_type': model type \"deit\" is unsupported; "
                      "expected \"vit\""));
  c = minimal_config();
  c["decoder"]["model_type"] = "bert";
  CHECK_THAT(load_error<InputError>(c),
             Contains("key 'decoder.model_type'") && Contains("\"bert\""));
  c = minimal_config();
  c["decoder"]["add_cross_attention"] = false;
  CHECK_THAT(
      load_error<InputError>(c),
      Contains("config.json: key 'decoder.add_cross_attention'") && Contains("cross-attention"));
  c = minimal_config();
  c["decoder"].erase("add_cross_attention");  // GPT2Config default is False
  CHECK_THAT(load_error<InputError>(c), Contains("key 'decoder.add_cross_attention'"));
  c = minimal_config();
  c.erase("decoder");
  CHECK_THAT(load_error<FormatError>(c), Contains("config.json: key 'decoder': missing"));
  c = minimal_config();
  c["encoder"] = "vit";
  CHECK_THAT(load_error<FormatError>(c),
             Contains("config.json: key 'encoder': expected an object, got string \"vit\""));
  c = minimal_config();
  c["encoder"]["num_channels"] = 1;
  CHECK_THAT(load_error<InputError>(c),
             Contains("key 'encoder.num_channels'") && Contains("1 channels"));
}

TEST_CASE("config: wrong JSON types name the file and key", "[config]") {
  struct Case {
    const char* section;
    const char* key;
    json value;
    const char* expected;
  };
  const Case cases[] = {
      {"decoder", "n_embd", "768", "key 'decoder.n_embd': expected an integer, got string \"768\""},
      {"decoder", "n_head", 12.5, "key 'decoder.n_head': expected an integer, got number 12.5"},
      {"decoder", "n_layer", nullptr, "key 'decoder.n_layer': expected an integer, got null"},
      {"decoder", "n_inner", "x", "key 'decoder.n_inner': expected an integer, got string"},
      {"decoder", "layer_norm_epsilon", "1e-5",
       "key 'decoder.layer_norm_epsilon': expected a number"},
      {"decoder", "scale_attn_weights", 1,
       "key 'decoder.scale_attn_weights': expected a boolean, got integer 1"},
      {"decoder", "activation_function", json::array(),
       "key 'decoder.activation_function': expected a string, got array"},
      {"encoder", "hidden_size", true,
       "key 'encoder.hidden_size': expected an integer, got boolean true"},
      {"encoder", "qkv_bias", "true", "key 'encoder.qkv_bias': expected a boolean"},
      {"encoder", "image_size", "224",
       "key 'encoder.image_size': expected an integer or a list [height, width]"},
      {"encoder", "layer_norm_eps", json::object(),
       "key 'encoder.layer_norm_eps': expected a number, got object"},
  };
  for (const auto& k : cases) {
    json c = minimal_config();
    c[k.section][k.key] = k.value;
    CAPTURE(k.key);
    CHECK_THAT(load_error<FormatError>(c), Contains(std::string("config.json: ") + k.expected));
  }
}

TEST_CASE("config: inconsistent sizes are ShapeErrors", "[config]") {
  json c = minimal_config();
  c["decoder"]["n_embd"] = 770;
  CHECK_THAT(
      load_error<ShapeError>(c),
      Contains("config.json: key 'decoder.n_embd': n_embd 770 is not a multiple of n_head 12"));
  c = minimal_config();
  c["encoder"]["num_attention_heads"] = 7;
  CHECK_THAT(
      load_error<ShapeError>(c),
      Contains(
          "key 'encoder.hidden_size': hidden_size 768 is not a multiple of num_attention_heads 7"));
  c = minimal_config();
  c["encoder"]["patch_size"] = 15;
  CHECK_THAT(
      load_error<ShapeError>(c),
      Contains("key 'encoder.image_size': image_size 224 is not a multiple of patch_size 15"));
  c = minimal_config();
  c["decoder"]["n_layer"] = 0;
  CHECK_THAT(load_error<ShapeError>(c),
             Contains("key 'decoder.n_layer': expected a positive size, got 0"));
  c = minimal_config();
  c["decoder"]["cross_attention_hidden_size"] = 512;
  CHECK_THAT(load_error<ShapeError>(c), Contains("key 'decoder.cross_attention_hidden_size': 512 "
                                                 "does not match the encoder's hidden_size 768"));
}

TEST_CASE("config: missing or malformed files", "[config]") {
  TempDir dir;
  CHECK_THAT(message_of<FormatError>([&] { load_vit_gpt2_config(dir.path); }),
             Contains("config.json: not found"));
  write_text(dir.path / "config.json", "{\"model_type\": ");
  CHECK_THAT(message_of<FormatError>([&] { load_vit_gpt2_config(dir.path); }),
             Contains((dir.path / "config.json").string() + ": invalid JSON"));
  write_text(dir.path / "config.json", "[1]");
  CHECK_THAT(message_of<FormatError>([&] { load_vit_gpt2_config(dir.path); }),
             Contains("config.json: expected a JSON object, got array"));

  Folder f(minimal_config());
  write_text(f.dir.path / "generation_config.json", "{,}");
  CHECK_THAT(message_of<FormatError>([&] { f.load(); }),
             Contains("generation_config.json: invalid JSON"));
  fs::remove(f.dir.path / "generation_config.json");
  write_text(f.dir.path / "preprocessor_config.json", "3");
  CHECK_THAT(message_of<FormatError>([&] { f.load(); }),
             Contains("preprocessor_config.json: expected a JSON object, got integer 3"));
}

// ---------------------------------------------------------------------------------------------
// Generation settings

TEST_CASE("generation: generation_config.json replaces config.json entirely", "[config]") {
  json c = minimal_config();
  c.update(
      {{"num_beams", 4}, {"max_length", 32}, {"eos_token_id", 7}, {"decoder_start_token_id", 9}});
  c["decoder"].update({{"no_repeat_ngram_size", 3}});
  Folder f(c);
  f.write("generation_config.json",
          {{"max_length", 16}, {"length_penalty", 0.5}, {"bos_token_id", 1}});
  const VitGpt2Config mc = f.load();
  CHECK(mc.has_generation_config_file);
  const GenerationConfig& g = mc.generation;
  CHECK(g.max_length == 16);
  CHECK(g.max_length_set);
  CHECK(g.length_penalty == 0.5);
  CHECK(g.bos_token_id == std::optional<std::int64_t>(1));
  // Absent from generation_config.json: GenerationConfig defaults, not config.json's values.
  CHECK(g.num_beams == 1);
  CHECK(g.no_repeat_ngram_size == 0);
  CHECK(g.eos_token_id.empty());
  CHECK_FALSE(g.decoder_start_token_id.has_value());
}

TEST_CASE("generation: without generation_config.json, top level before decoder", "[config]") {
  json c = minimal_config();
  c.update({{"num_beams", 3},
            {"decoder_start_token_id", 11},
            {"pad_token_id", 12},
            {"eos_token_id", 13},
            {"bos_token_id", 14},
            {"length_penalty", 2.0}});
  c["decoder"].update({{"num_beams", 5},
                       {"decoder_start_token_id", 21},
                       {"pad_token_id", 22},
                       {"eos_token_id", 23},
                       {"bos_token_id", 24},
                       {"no_repeat_ngram_size", 2},
                       {"max_length", 40},
                       {"early_stopping", true},
                       {"length_penalty", 3.0}});
  Folder f(c);
  const GenerationConfig g = f.load().generation;
  // Set at the top level: the top level wins.
  CHECK(g.num_beams == 3);
  CHECK(g.decoder_start_token_id == std::optional<std::int64_t>(11));
  CHECK(g.pad_token_id == std::optional<std::int64_t>(12));
  CHECK(g.eos_token_id == std::vector<std::int64_t>{13});
  CHECK(g.bos_token_id == std::optional<std::int64_t>(14));
  CHECK(g.length_penalty == 2.0);
  // Only in the decoder: the decoder's value.
  CHECK(g.no_repeat_ngram_size == 2);
  CHECK(g.max_length == 40);
  CHECK(g.max_length_set);
  CHECK(g.early_stopping == GenerationConfig::EarlyStopping::True);
}

TEST_CASE("generation: a top-level value equal to the default counts as unset", "[config]") {
  // from_model_config compares with GenerationConfig() by value, so an explicit num_beams 1 at the
  // top level does not hide the decoder's 4, and an explicit null is dropped.
  json c = minimal_config();
  c.update({{"num_beams", 1}, {"repetition_penalty", 1.0}, {"eos_token_id", nullptr}});
  c["decoder"].update({{"num_beams", 4}, {"repetition_penalty", 1.3}, {"eos_token_id", 50}});
  Folder f(c);
  const GenerationConfig g = f.load().generation;
  CHECK(g.num_beams == 4);
  CHECK(g.repetition_penalty == 1.3);
  CHECK(g.eos_token_id == std::vector<std::int64_t>{50});
}

TEST_CASE("generation: the decoder's null replaces GPT2Config's bos/eos default", "[config]") {
  json c = minimal_config();
  c["decoder"].update({{"bos_token_id", nullptr}, {"eos_token_id", nullptr}});
  Folder f(c);
  const GenerationConfig g = f.load().generation;
  CHECK_FALSE(g.bos_token_id.has_value());
  CHECK(g.eos_token_id.empty());
}

TEST_CASE("generation: value forms and ranges", "[config]") {
  Folder f(minimal_config());
  const auto gen = [&](const json& j) {
    f.write("generation_config.json", j);
    return f.load().generation;
  };
  CHECK(gen({{"eos_token_id", {5, 6}}}).eos_token_id == std::vector<std::int64_t>{5, 6});
  CHECK(gen({{"eos_token_id", 5}}).eos_token_id == std::vector<std::int64_t>{5});
  CHECK(gen({{"eos_token_id", nullptr}}).eos_token_id.empty());
  CHECK(gen({{"early_stopping", "never"}}).early_stopping ==
        GenerationConfig::EarlyStopping::Never);
  CHECK(gen({{"early_stopping", true}}).early_stopping == GenerationConfig::EarlyStopping::True);
  CHECK(gen({{"early_stopping", false}}).early_stopping == GenerationConfig::EarlyStopping::False);
  CHECK_FALSE(gen({{"max_length", 20}}).max_length_set);  // HF: 20 is "untouched"
  CHECK(gen({{"max_length", 21}}).max_length_set);
  CHECK_FALSE(gen(json::object()).max_length_set);
  {
    const GenerationConfig g = gen({{"max_new_tokens", 12},
                                    {"min_new_tokens", 2},
                                    {"min_length", 3},
                                    {"do_sample", true},
                                    {"temperature", 0.7},
                                    {"top_k", 5},
                                    {"top_p", 0.9},
                                    {"no_repeat_ngram_size", 3},
                                    {"repetition_penalty", 1.2},
                                    {"pad_token_id", 0}});
    CHECK(g.max_new_tokens == std::optional<std::int64_t>(12));
    CHECK(g.min_new_tokens == std::optional<std::int64_t>(2));
    CHECK(g.min_length == 3);
    CHECK(g.do_sample);
    CHECK(g.temperature == 0.7);
    CHECK(g.top_k == 5);
    CHECK(g.top_p == 0.9);
    CHECK(g.no_repeat_ngram_size == 3);
    CHECK(g.repetition_penalty == 1.2);
    CHECK(g.pad_token_id == std::optional<std::int64_t>(0));
  }
  const auto gen_error = [&](const json& j) {
    f.write("generation_config.json", j);
    return message_of<xcaption::Error>([&] { f.load(); });
  };
  CHECK_THAT(gen_error({{"early_stopping", "always"}}),
             Contains("generation_config.json: key 'early_stopping': expected true, false or "
                      "\"never\", got \"always\""));
  CHECK_THAT(gen_error({{"early_stopping", 1}}),
             Contains("key 'early_stopping': expected a boolean or \"never\", got integer 1"));
  CHECK_THAT(gen_error({{"num_beams", 0}}),
             Contains("generation_config.json: key 'num_beams': expected >= 1, got 0"));
  CHECK_THAT(gen_error({{"num_beams", "4"}}),
             Contains("key 'num_beams': expected an integer, got string \"4\""));
  CHECK_THAT(gen_error({{"max_length", 0}}), Contains("key 'max_length': expected >= 1"));
  CHECK_THAT(gen_error({{"max_new_tokens", 0}}), Contains("key 'max_new_tokens': expected >= 1"));
  CHECK_THAT(gen_error({{"repetition_penalty", 0.0}}),
             Contains("key 'repetition_penalty': expected > 0"));
  CHECK_THAT(gen_error({{"no_repeat_ngram_size", -1}}),
             Contains("key 'no_repeat_ngram_size': expected >= 0"));
  CHECK_THAT(gen_error({{"eos_token_id", "50256"}}),
             Contains("key 'eos_token_id': expected an integer or a list of integers"));
  CHECK_THAT(gen_error({{"eos_token_id", {1, "2"}}}), Contains("key 'eos_token_id'"));
  CHECK_THAT(gen_error({{"eos_token_id", -3}}),
             Contains("key 'eos_token_id': token id -3 is negative"));
  CHECK_THAT(
      gen_error({{"decoder_start_token_id", 50257}}),
      Contains(
          "key 'decoder_start_token_id': token id 50257 is outside the vocabulary [0, 50257)"));
  CHECK_THAT(gen_error({{"pad_token_id", -1}}),
             Contains("key 'pad_token_id': token id -1 is negative"));
  CHECK_THAT(gen_error({{"decoder_start_token_id", {1, 2}}}),
             Contains("a list of ids is not supported"));
  CHECK_THAT(gen_error({{"do_sample", "no"}}), Contains("key 'do_sample': expected a boolean"));
  CHECK_THAT(gen_error({{"length_penalty", "1"}}),
             Contains("key 'length_penalty': expected a number"));
  // Errors in config.json name the level the value came from.
  json c = minimal_config();
  c["decoder"]["num_beams"] = "4";
  CHECK_THAT(load_error<FormatError>(c),
             Contains("config.json: key 'decoder.num_beams': expected an integer"));
}

TEST_CASE("generation: settings xcaption does not implement are reported", "[config]") {
  json c = minimal_config();
  c["max_time"] = 5;
  c["decoder"].update({{"num_beam_groups", 2},
                       {"diversity_penalty", 0.0},
                       {"bad_words_ids", nullptr},
                       {"num_return_sequences", 1}});
  Folder f(c);
  const GenerationConfig g = f.load().generation;
  REQUIRE(g.unsupported.size() == 2);
  CHECK(g.unsupported[0] == "decoder.num_beam_groups=2 (config.json)");
  CHECK(g.unsupported[1] == "max_time=5 (config.json)");
  f.write("generation_config.json", {{"suppress_tokens", {1, 2}}});
  const GenerationConfig h = f.load().generation;
  REQUIRE(h.unsupported.size() == 1);
  CHECK(h.unsupported[0] == "suppress_tokens=[1,2] (generation_config.json)");
}

TEST_CASE("generation: forced_bos_token_id and forced_eos_token_id are read", "[config]") {
  json c = minimal_config();
  c["forced_eos_token_id"] = 7;
  c["decoder"]["forced_bos_token_id"] = 3;
  Folder f(c);
  const GenerationConfig g = f.load().generation;
  CHECK(g.unsupported.empty());
  REQUIRE(g.forced_bos_token_id);
  CHECK(*g.forced_bos_token_id == 3);
  REQUIRE(g.forced_eos_token_id);
  CHECK(*g.forced_eos_token_id == 7);
  c["forced_eos_token_id"] = 1 << 30;
  CHECK_THAT(load_error<InputError>(c), Contains("forced_eos_token_id"));
}

// ---------------------------------------------------------------------------------------------
// Image processor

TEST_CASE("preprocessor: size forms and values", "[config]") {
  json c = minimal_config();
  c["encoder"]["image_size"] = 384;
  Folder f(c);
  const auto pre = [&](const json& j) {
    f.write("preprocessor_config.json", j);
    return f.load().preprocessor;
  };
  CHECK(pre({{"size", 384}}).width == 384);
  CHECK(pre({{"size", {{"height", 384}, {"width", 384}}}}).height == 384);
  CHECK(pre({{"size", {384, 384}}}).height == 384);
  {
    f.write("preprocessor_config.json", {{"size", 384}});
    CHECK(f.load().has_preprocessor_config_file);
  }
  {
    // No size in the file: ViTImageProcessor's own default (224), not the encoder's image_size;
    // with do_resize false that is not an error.
    const auto p = pre({{"do_resize", false}});
    CHECK_FALSE(p.do_resize);
    CHECK(p.height == 224);
  }
  {
    const auto p = pre({{"size", 384},
                        {"resample", 3},
                        {"do_rescale", false},
                        {"rescale_factor", 0.5},
                        {"do_normalize", false},
                        {"image_mean", 0.25},
                        {"image_std", {0.1, 0.2, 0.3}}});
    CHECK(p.resample == 3);
    CHECK_FALSE(p.do_rescale);
    CHECK(p.rescale_factor == 0.5);
    CHECK_FALSE(p.do_normalize);
    CHECK(p.image_mean == std::vector<float>{0.25f, 0.25f, 0.25f});
    CHECK(p.image_std == std::vector<float>{0.1f, 0.2f, 0.3f});
  }
  const auto pre_error = [&](const json& j) {
    f.write("preprocessor_config.json", j);
    return message_of<xcaption::Error>([&] { f.load(); });
  };
  CHECK_THAT(
      pre_error({{"size", {{"shortest_edge", 384}}}}),
      Contains("preprocessor_config.json: key 'size': {\"shortest_edge\":384} is not supported"));
  CHECK_THAT(pre_error({{"size", {{"height", 384}}}}),
             Contains("key 'size'") && Contains("not supported"));
  CHECK_THAT(pre_error({{"size", {{"height", "384"}, {"width", 384}}}}),
             Contains("key 'size.height': expected an integer"));
  CHECK_THAT(pre_error({{"size", "384"}}),
             Contains("key 'size': expected an integer, [height, width]"));
  CHECK_THAT(pre_error({{"size", 224}}),
             Contains("preprocessor_config.json: key 'size': resizes to 224x224, but the encoder's "
                      "image_size is 384"));
  CHECK_THAT(pre_error({{"size", 384}, {"resample", 7}}),
             Contains("key 'resample': PIL resample filter 7 is unknown"));
  CHECK_THAT(pre_error({{"size", 384}, {"image_mean", {0.5, 0.5}}}),
             Contains("key 'image_mean': expected a number or a list of 3 numbers"));
  CHECK_THAT(pre_error({{"size", 384}, {"image_std", 0}}),
             Contains("key 'image_std': a standard deviation of 0"));
  CHECK_THAT(pre_error({{"size", 384}, {"do_normalize", "yes"}}),
             Contains("key 'do_normalize': expected a boolean"));
  CHECK_THAT(pre_error({{"size", 384}, {"rescale_factor", "1/255"}}),
             Contains("key 'rescale_factor': expected a number"));
}

TEST_CASE("preprocessor: accepted and refused processor types", "[config]") {
  Folder f(minimal_config());
  for (const json& ok : {json{{"feature_extractor_type", "ViTFeatureExtractor"}},
                         json{{"image_processor_type", "ViTImageProcessor"}},
                         json{{"image_processor_type", "ViTImageProcessorFast"}},
                         json{{"image_processor_type", "ViTImageProcessor"},
                              {"feature_extractor_type", "ViTFeatureExtractor"}},
                         json::object()}) {
    f.write("preprocessor_config.json", ok);
    CHECK_NOTHROW(f.load());
  }
  f.write("preprocessor_config.json", {{"image_processor_type", "DeiTImageProcessor"}});
  CHECK_THAT(message_of<InputError>([&] { f.load(); }),
             Contains("preprocessor_config.json: key 'image_processor_type': image processor "
                      "'DeiTImageProcessor' is not supported") &&
                 Contains("accepts image_processor_type ViTImageProcessor"));
  f.write("preprocessor_config.json", {{"feature_extractor_type", "ConvNextFeatureExtractor"}});
  CHECK_THAT(
      message_of<InputError>([&] { f.load(); }),
      Contains("key 'feature_extractor_type': feature extractor 'ConvNextFeatureExtractor'"));
}

// ---------------------------------------------------------------------------------------------
// nlpconnect/vit-gpt2-image-captioning: its public config.json and preprocessor_config.json
// (transformers 4.12 serialisation; the repository has no generation_config.json), copied under
// tests/data/nlpconnect-vit-gpt2/.

TEST_CASE("config: nlpconnect/vit-gpt2-image-captioning", "[config]") {
  const VitGpt2Config mc = load_vit_gpt2_config(fs::path(XCAPTION_TEST_DATA) / "nlpconnect-vit-gpt2");
  // ViT-B/16 at 224: 14x14 patches + CLS = 197 tokens.
  CHECK(mc.encoder.hidden_size == 768);
  CHECK(mc.encoder.num_hidden_layers == 12);
  CHECK(mc.encoder.num_attention_heads == 12);
  CHECK(mc.encoder.intermediate_size == 3072);
  CHECK(mc.encoder.activation == Activation::GeluErf);
  CHECK(mc.encoder.layer_norm_eps == 1e-12);
  CHECK(mc.encoder.image_size == 224);
  CHECK(mc.encoder.patch_size == 16);
  CHECK((mc.encoder.image_size / mc.encoder.patch_size) *
                (mc.encoder.image_size / mc.encoder.patch_size) +
            1 ==
        197);
  CHECK(mc.encoder.qkv_bias);
  // GPT-2 small with cross-attention.
  CHECK(mc.decoder.vocab_size == 50257);
  CHECK(mc.decoder.n_positions == 1024);
  CHECK(mc.decoder.n_embd == 768);
  CHECK(mc.decoder.n_layer == 12);
  CHECK(mc.decoder.n_head == 12);
  CHECK(mc.decoder.n_inner == 3072);
  CHECK(mc.decoder.activation == Activation::GeluTanh);
  CHECK(mc.decoder.layer_norm_epsilon == 1e-5);
  CHECK(mc.decoder.add_cross_attention);
  CHECK(mc.decoder.tie_word_embeddings);  // the sub-config ties lm_head to wte
  CHECK(mc.decoder.scale_attn_weights);
  CHECK_FALSE(mc.decoder.scale_attn_by_inverse_layer_idx);
  CHECK_FALSE(mc.enc_to_dec_proj);
  // Generation: from config.json (no generation_config.json).
  CHECK_FALSE(mc.has_generation_config_file);
  const GenerationConfig& g = mc.generation;
  CHECK(g.bos_token_id == std::optional<std::int64_t>(50256));
  CHECK(g.eos_token_id == std::vector<std::int64_t>{50256});
  CHECK(g.pad_token_id == std::optional<std::int64_t>(50256));
  CHECK(g.decoder_start_token_id == std::optional<std::int64_t>(50256));
  CHECK(g.max_length == 20);
  CHECK_FALSE(g.max_length_set);  // the decoder's explicit 20 is HF's "untouched" default
  CHECK(g.num_beams == 1);
  CHECK_FALSE(g.do_sample);  // task_specific_params.text-generation is not used by generate()
  CHECK(g.early_stopping == GenerationConfig::EarlyStopping::False);
  CHECK(g.length_penalty == 1.0);
  CHECK(g.unsupported.empty());
  // Preprocessor: legacy ViTFeatureExtractor file, size 224, bilinear, mean = std = 0.5.
  CHECK(mc.has_preprocessor_config_file);
  CHECK(mc.preprocessor.do_resize);
  CHECK(mc.preprocessor.height == 224);
  CHECK(mc.preprocessor.width == 224);
  CHECK(mc.preprocessor.resample == 2);
  CHECK(mc.preprocessor.do_rescale);  // absent in the file: ViTImageProcessor default
  CHECK(mc.preprocessor.rescale_factor == 1.0 / 255.0);
  CHECK(mc.preprocessor.do_normalize);
  CHECK(mc.preprocessor.image_mean == std::vector<float>{0.5f, 0.5f, 0.5f});
  CHECK(mc.preprocessor.image_std == std::vector<float>{0.5f, 0.5f, 0.5f});
}
