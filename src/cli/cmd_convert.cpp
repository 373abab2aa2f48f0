// xcaption convert: a model folder (or Hugging Face cache name) -> one model.safetensors + config
// and tokenizer files, in the stored dtype or f32 / f16 / bf16.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include <xcaption/captioner.hpp>
#include <xcaption/convert.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace {

// Below this much weight data a conversion takes a moment and prints no progress.
constexpr std::int64_t kProgressFrom = 64ll << 20;

volatile std::sig_atomic_t g_signal = 0;

// First SIGINT/SIGTERM: stop after the tensor being written; convert_model then removes its
// temporary folder. A second one quits at once (leaving the hidden temporary folder).
extern "C" void on_signal(int sig) {
  if (g_signal == 0) {
    g_signal = sig;
    return;
  }
  ::_exit(128 + sig);
}

struct Interrupted {};

class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction a {};
    a.sa_handler = on_signal;
    sigemptyset(&a.sa_mask);
    ::sigaction(SIGINT, &a, &old_int_);
    ::sigaction(SIGTERM, &a, &old_term_);
  }
  ~SignalGuard() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_{};
};

std::string list(const std::vector<std::string>& names, std::size_t most = 8) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < most; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > most) s += fmt::format(" and {} more", names.size() - most);
  return s;
}

}  // namespace

int cmd_convert(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("model,m", po::value<std::string>()->value_name("SRC"),
       "the model to convert: a folder, or ORG/NAME[@REV] of the Hugging Face cache (as for every "
       "command). Default: $XCAPTION_MODEL, else the bundled model")
      ("out,o", po::value<std::string>()->value_name("DIR"), "folder to create (required; its parent must exist)")
      ("dtype", po::value<std::string>()->value_name("f32|f16|bf16"),
       "dtype of the float tensors written (f16 and bf16 round to nearest even). Default: each "
       "tensor's stored dtype")
      ("force", "replace DIR if it exists (only an empty folder or a model folder, never one holding SRC)");
  try {
    const auto vm = parse("convert", argc, argv, options, {});
    if (vm.count("help")) {
      print_help("xcaption convert [--model SRC] --out DIR [--dtype f32|f16|bf16] [--force]",
                 "Writes the model SRC once as DIR/model.safetensors, one file with every tensor of SRC's\n"
                 "weights (a single file or shards), plus the files loading it reads: config.json,\n"
                 "generation_config.json, preprocessor_config.json and the tokenizer files (tokenizer.json,\n"
                 "vocab.json + merges.txt, vocab.txt, special_tokens_map.json, tokenizer_config.json,\n"
                 "added_tokens.json), whichever SRC has. A Hugging Face cache snapshot's symlinks are\n"
                 "copied as the files they point to. DIR then works with --model anywhere, with transformers\n"
                 "(from_pretrained) and with any safetensors reader.",
                 options,
                 "The header carries __metadata__ {\"format\": \"pt\"} (what transformers writes); tensors are\n"
                 "ordered by element size, then name, so each one is aligned. Float tensors keep their dtype\n"
                 "unless --dtype says otherwise; integer buffers (GPT-2's legacy attention masks, position\n"
                 "ids) are copied byte for byte when SRC gives their bytes, else dropped with a warning.\n"
                 "Everything is written into a hidden temporary folder beside DIR and renamed to DIR at the\n"
                 "end: a failed or interrupted (SIGINT, SIGTERM: exit 130, 143) conversion leaves nothing\n"
                 "behind, and DIR is never overwritten without --force.\n"
                 "Progress goes to stderr for models over 64 MB; a summary goes to stdout.\n");
      return kOk;
    }
    if (!vm.count("out")) throw UsageError("convert: --out is required (see xcaption convert --help)");
    const std::string out = vm["out"].as<std::string>();
    if (out.empty()) throw UsageError("convert: --out must not be empty");
    ConvertOptions o;
    if (vm.count("dtype")) {
      const std::string d = vm["dtype"].as<std::string>();
      if (d == "f32") o.dtype = StorageType::F32;
      else if (d == "f16") o.dtype = StorageType::F16;
      else if (d == "bf16") o.dtype = StorageType::BF16;
      else throw UsageError(fmt::format("convert: --dtype must be f32, f16 or bf16, got '{}'", d));
    }
    o.force = vm.count("force") > 0;

    // A redrawn line on a terminal, a line every 10 s otherwise; nothing for small models.
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    auto last = t0;
    bool drew = false;
    o.progress = [&](std::int64_t done, std::int64_t total) {
      if (g_signal != 0) throw Interrupted{};
      if (total < kProgressFrom) return;
      const auto now = Clock::now();
      const bool end = done == total;
      if (!end && now - last < (tty ? std::chrono::milliseconds(100) : std::chrono::milliseconds(10000))) return;
      last = now;
      const std::string line = fmt::format("convert: {:.0f}/{:.0f} MB ({:.0f}%)", done / 1e6, total / 1e6,
                                           100.0 * static_cast<double>(done) / static_cast<double>(total));
      if (tty) {
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), end ? "\n" : "");
        drew = !end;
      } else {
        std::fprintf(stderr, "xcaption: %s\n", line.c_str());
      }
      std::fflush(stderr);
    };
    const std::string src = vm.count("model") ? vm["model"].as<std::string>() : default_model_dir().string();
    ConvertReport r;
    try {
      SignalGuard guard;
      r = convert_model(src, out, o);
    } catch (const Interrupted&) {
      if (drew) std::fputs("\n", stderr);
      std::fprintf(stderr, "xcaption: convert: interrupted; nothing was written\n");
      return g_signal == SIGTERM ? 143 : kInterrupted;
    } catch (...) {
      if (drew) std::fputs("\n", stderr);
      throw;
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r.dropped.empty())
      std::fprintf(stderr,
                   "xcaption: warning: dropped %zu non-float tensor%s whose bytes %s does not give as stored "
                   "(transformers rebuilds such buffers): %s\n",
                   r.dropped.size(), r.dropped.size() == 1 ? "" : "s", r.source.string().c_str(),
                   list(r.dropped).c_str());
    std::cout << fmt::format("convert: wrote {} ({} tensors, {}, {:.1f} MB) from {} in {:.1f} s\n", r.weights.string(),
                             r.tensors, fmt::join(r.dtypes, "+"), r.bytes / 1e6, r.source.string(), seconds);
    if (!r.kept_as_stored.empty())
      std::cout << fmt::format("convert: kept {} non-float tensor{} as stored: {}\n", r.kept_as_stored.size(),
                               r.kept_as_stored.size() == 1 ? "" : "s", list(r.kept_as_stored));
    std::cout << fmt::format("convert: copied {}\n", r.copied_files.empty() ? "no other file" : list(r.copied_files, 20));
    return kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
