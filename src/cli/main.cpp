// xcaption command-line entry point: dispatches to a subcommand.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "src/cli/cli.hpp"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"caption", xcaption::cli::cmd_caption, "caption images (plain text or JSON lines)"},
    {"attend", xcaption::cli::cmd_attend, "show where each word of the caption looked (PNG overlays, JSON maps)"},
    {"video", xcaption::cli::cmd_video, "caption a video: subtitles (SRT, WebVTT), JSON lines, annotated copy"},
    {"info", xcaption::cli::cmd_info, "show what a model folder contains"},
    {"convert", xcaption::cli::cmd_convert, "write a model once as one model.safetensors (+ config, tokenizer), in f32, f16 or bf16"},
    {"tokenize", xcaption::cli::cmd_tokenize, "text -> token ids, or ids -> text with --decode"},
    {"scenes", xcaption::cli::cmd_scenes, "render a shapes-world dataset (PNGs + scenes.jsonl)"},
    {"eval", xcaption::cli::cmd_eval, "caption a shapes-world dataset and score it"},
    {"bench", xcaption::cli::cmd_bench, "time each stage and compare with the machine's roofline"},
    {"serve", xcaption::cli::cmd_serve, "HTTP server: Hugging Face and OpenAI request shapes, a page with attention maps"},
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "xcaption %s: caption images with Hugging Face encoder-decoder checkpoints (ViT-GPT2, BLIP) on the CPU\n\n"
               "usage: xcaption COMMAND [OPTIONS] [ARGS]\n\ncommands:\n",
               XCAPTION_VERSION);
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\n`xcaption COMMAND --help` explains each command. The model is --model DIR (or ORG/NAME\n"
               "of a model in the Hugging Face cache), else $XCAPTION_MODEL, else the bundled default model.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // FFmpeg logs its own complaints about a broken video ("moov atom not found") on stderr; the
  // error xcaption reports says it in one line. A value the user set is kept.
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", 0);
  if (argc < 2) {
    print_usage(stderr);
    return xcaption::cli::kUsage;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("xcaption %s\n", XCAPTION_VERSION);
    return 0;
  }
  for (const auto& c : kCommands)
    if (name == c.name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "xcaption: error: unknown command '%s' (see xcaption --help)\n", name.c_str());
  return xcaption::cli::kUsage;
}
