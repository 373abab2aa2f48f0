// Shared pieces of the xcaption subcommands.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>

namespace xcaption::cli {

namespace po = boost::program_options;

/// Exit codes (README "Exit codes").
enum ExitCode : int {
  kOk = 0,
  kFailure = 1,     // anything else
  kUsage = 2,       // bad command line
  kBadFile = 3,     // FormatError: missing/unreadable/malformed file
  kBadShape = 4,    // ShapeError: tensor or config size mismatch
  kBadInput = 5,    // InputError: option or value out of range, unsupported model
  kBackend = 6,     // BackendError
  kThresholdMissed = 7,  // eval: a --min-* threshold was missed
  kSomeFailed = 8,       // caption/attend: some inputs failed, others succeeded
  kInterrupted = 130,
};

/// Thrown for command-line mistakes; main prints it with a hint to --help.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses argv (after the subcommand name). Unknown options and stray positionals are errors.
po::variables_map parse(const std::string& command, int argc, char** argv,
                        const po::options_description& options,
                        const po::positional_options_description& positional);

/// Prints "usage: xcaption COMMAND ..." + summary + options.
void print_help(const std::string& usage, const std::string& summary,
                const po::options_description& options, const std::string& details = "");

/// --model, --threads and --dtype, shared by every command that loads a model.
void add_model_options(po::options_description& options);
/// The folder --model (else $XCAPTION_MODEL, else the bundled model) names, a Hugging Face cache
/// name resolved (resolve_model); FormatError when it is found nowhere.
std::filesystem::path model_dir(const po::variables_map& vm);
/// --dtype f32|bf16 (UsageError otherwise).
ComputeType compute_type(const po::variables_map& vm);
Captioner load_captioner(const po::variables_map& vm);

/// --max-pixels and --max-image-mb (README "Untrusted input"), for the commands that read image files.
void add_image_limit_options(po::options_description& options);
/// The ImageLimits those flags give (UsageError for values below 1).
ImageLimits image_limits(const po::variables_map& vm);

/// --beams, --max-new-tokens, --prompt and the other generate() overrides, shared by caption, eval, ...
void add_generation_options(po::options_description& options);
GenerationOptions generation_options(const po::variables_map& vm);
/// generation_options() plus --prompt.
CaptionRequest caption_request(const po::variables_map& vm);

/// --layer / --head values: "N" (0-based, < count), "mean" (unset) or "last" (count - 1).
/// Throws UsageError for anything else.
std::optional<int> parse_map_index(const po::variables_map& vm, const char* key, std::int64_t count);

/// One image's result on stdout, flushed at once: `json` as one line when the command was given
/// --json, else "PATH: CAPTION" when several images were given, else the bare caption.
void print_image_result(const std::optional<nlohmann::json>& json, const std::string& path,
                        const std::string& caption, bool several_images);

/// Maps an exception to its exit code and prints "xcaption: error: ..." to stderr.
int report_error(const std::exception& e);
/// The exit code report_error would return, without printing.
int exit_code_of(const std::exception& e);

int cmd_caption(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_scenes(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_attend(int argc, char** argv);
int cmd_video(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_serve(int argc, char** argv);

}  // namespace xcaption::cli
