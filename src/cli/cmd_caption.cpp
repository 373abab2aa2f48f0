// xcaption caption IMAGE|DIR... : captions images, folders and lists, one caption per image, as
// text or JSON lines on stdout, or into the files dataset tools read (src/cli/collection.hpp).
// A reader thread decodes and preprocesses the next images while the engine captions a batch;
// a batch goes through the encoder together and its images decode in the same steps.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/viz.hpp>

#include <xcaption/errors.hpp>

#include "src/cli/cli.hpp"
#include "src/cli/collection.hpp"
#include "src/cli/progress.hpp"
#include "src/io/result_json.hpp"

namespace xcaption::cli {

namespace {

// Images per engine batch when --batch is not given: measured in bench/batch_throughput.sh.
constexpr std::int64_t kDefaultBatch = 8;

volatile std::sig_atomic_t g_stop_signal = 0;

// First SIGINT/SIGTERM: finish the batch in flight, write what is done, exit 130/143. A second
// one quits at once (line files hold only whole lines; CSV/COCO are renamed into place whole).
extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal == 0) {
    g_stop_signal = sig;
    static const char msg[] = "\nxcaption: stopping after this batch (again to quit now)\n";
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    return;
  }
  ::_exit(128 + sig);
}

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction a {};
    a.sa_handler = on_stop_signal;
    sigemptyset(&a.sa_mask);
    ::sigaction(SIGINT, &a, &old_int_);
    ::sigaction(SIGTERM, &a, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_{};
};

// One image as the reader thread hands it over: prepared, or the error that stopped it.
struct Loaded {
  const InputItem* item = nullptr;
  std::optional<PreparedImage> image;
  std::string error;
  int code = 0;
};

// Reads and prepares `items` in order on its own thread, at most `ahead` images ahead.
class Reader {
 public:
  Reader(const Captioner& captioner, std::vector<const InputItem*> items, std::size_t ahead, ImageLimits limits)
      : captioner_(captioner), items_(std::move(items)), ahead_(ahead), limits_(limits), thread_([this] { run(); }) {}
  ~Reader() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  /// The next image, in input order; nullopt after the last.
  std::optional<Loaded> next() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !queue_.empty() || finished_; });
    if (queue_.empty()) return std::nullopt;
    Loaded l = std::move(queue_.front());
    queue_.pop_front();
    changed_.notify_all();
    return l;
  }

 private:
  void run() {
    for (const InputItem* item : items_) {
      Loaded l;
      l.item = item;
      try {
        if (!item->exists) throw FormatError(fmt::format("{}: no such file", item->name));
        l.image = captioner_.prepare(load_image(item->path, limits_));
      } catch (const std::exception& e) {
        l.error = e.what();
        l.code = exit_code_of(e);
      }
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return queue_.size() < ahead_ || quit_; });
      if (quit_) break;
      queue_.push_back(std::move(l));
      changed_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
    changed_.notify_all();
  }

  const Captioner& captioner_;
  std::vector<const InputItem*> items_;
  std::size_t ahead_;
  ImageLimits limits_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Loaded> queue_;
  bool finished_ = false, quit_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

SidecarMode sidecar_mode(const std::string& m) {
  if (m == "skip") return SidecarMode::Skip;
  if (m == "overwrite") return SidecarMode::Overwrite;
  if (m == "append") return SidecarMode::Append;
  throw UsageError(fmt::format("--sidecar-mode must be skip, overwrite or append, got '{}'", m));
}

const char* kDetails =
    "Inputs: image files, directories (their images; --recursive descends; hidden entries and\n"
    "files without an image extension are skipped) and --input-list files (one path per line,\n"
    "'-' = stdin, blank lines and # comments ignored). Order: arguments in order, each\n"
    "directory sorted by name, lists in list order; outputs follow it.\n"
    "\n"
    "Outputs (any combination; without them the captions go to stdout as \"FILE: caption\",\n"
    "or the bare caption for one image, or --json lines):\n"
    "  --jsonl F      one JSON line per image with the --json keys; a failed image gets\n"
    "                 {\"image\", \"error\", \"error_code\"} and the run goes on\n"
    "  --sidecar      the caption in STEM.txt (or STEM.EXT) beside each image, or mirrored under\n"
    "                 --sidecar-dir; --sidecar-mode skip (keep an existing file and do not\n"
    "                 caption the image) | overwrite | append (a new line: one caption per line)\n"
    "  --metadata F   Hugging Face ImageFolder metadata.jsonl: {\"file_name\" (relative to F's\n"
    "                 folder), \"text\"}\n"
    "  --csv F        file_name,text (RFC 4180); --coco F: [{\"image_id\", \"caption\"}] with ids\n"
    "                 from --coco-ids ANNOTATIONS.json, else the last digits of the file name\n"
    "  --prefix/--suffix wrap the caption in sidecar, metadata and CSV files.\n"
    "Line files get each line whole and flushed as its image finishes; CSV and COCO are written\n"
    "at the end through a temporary file.\n"
    "\n"
    "Resume: --resume skips the images the existing --jsonl / --metadata already hold (a line cut\n"
    "by a killed run is removed and redone; --retry-errors tries failed images again). Shards:\n"
    "--shard I/N keeps the images whose path (relative to its directory argument) hashes to I\n"
    "mod N, so N machines with the same inputs split them with no overlap; --shard auto reads\n"
    "Slurm's SLURM_ARRAY_TASK_ID/COUNT, or JOB_COMPLETION_INDEX with --shard-count N\n"
    "(docs/scale-out.md). SIGINT/SIGTERM finish the batch in flight and exit 130/143.\n"
    "\n"
    "Exit status: 0 when every image succeeded; 8 when some failed (the last stderr line says\n"
    "how many and where they are recorded); when every image failed, the first failure's code\n"
    "(3 for an unreadable file).\n";

}  // namespace

int cmd_caption(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("json", "print one JSON object per image and line (caption, tokens, log-probs, timings; a task's result)")
      ("boxes", po::value<std::string>()->value_name("PNG"),
       "one image, a task model: write the image with the task's boxes, quads or polygons and labels drawn")
      ("image", po::value<std::vector<std::string>>()->multitoken(), "image files and directories")
      ("recursive,r", "descend into subdirectories")
      ("input-list", po::value<std::vector<std::string>>()->value_name("FILE"), "read paths from FILE (- = stdin)")
      ("jsonl", po::value<std::string>()->value_name("FILE"), "write one JSON line per image")
      ("sidecar", po::value<std::string>()->implicit_value(".txt")->value_name("EXT"),
       "write each caption to STEM.EXT beside the image (default .txt)")
      ("sidecar-dir", po::value<std::string>()->value_name("DIR"), "sidecar files under DIR, mirroring the input tree")
      ("sidecar-mode", po::value<std::string>()->default_value("skip")->value_name("skip|overwrite|append"),
       "what to do with an existing caption file")
      ("prefix", po::value<std::string>()->default_value("")->value_name("TEXT"), "text before the caption in dataset files")
      ("suffix", po::value<std::string>()->default_value("")->value_name("TEXT"), "text after the caption in dataset files")
      ("metadata", po::value<std::string>()->value_name("FILE"), "write a Hugging Face ImageFolder metadata.jsonl")
      ("csv", po::value<std::string>()->value_name("FILE"), "write file_name,text CSV")
      ("coco", po::value<std::string>()->value_name("FILE"), "write COCO caption results")
      ("coco-ids", po::value<std::string>()->value_name("FILE"), "COCO annotations whose images list gives the ids")
      ("resume", "skip images already in --jsonl / --metadata")
      ("retry-errors", "with --resume: caption the images that failed before again")
      ("force", "overwrite existing --jsonl / --metadata files instead of refusing")
      ("shard", po::value<std::string>()->value_name("I/N|auto"), "caption only shard I of N")
      ("shard-count", po::value<std::int64_t>()->value_name("N"), "number of shards for --shard auto with JOB_COMPLETION_INDEX")
      ("batch", po::value<std::int64_t>()->value_name("N"),
       fmt::format("images per engine batch (default {})", kDefaultBatch).c_str())
      ("progress", po::value<std::string>()->default_value("auto")->value_name("auto|bar|plain|none"),
       "progress on stderr: a bar on a terminal, a line every 10 s otherwise");
  add_model_options(options);
  add_generation_options(options);
  add_image_limit_options(options);
  po::positional_options_description positional;
  positional.add("image", -1);
  try {
    const auto vm = parse("caption", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help("xcaption caption IMAGE|DIR... [OPTIONS]",
                 "Captions each image. Plain output is the caption alone, or \"FILE: caption\" when\n"
                 "several images are given; --json prints one object per line with the keys image,\n"
                 "caption, prompt_ids (the decoder input before the first generated token), token_ids,\n"
                 "tokens, logprobs (these three: the generated tokens), sequence_score, num_beams,\n"
                 "timings_ms. The caption is what transformers prints: prompt included.\n"
                 "Generation settings default to the model folder's generation_config.json.",
                 options, kDetails);
      return kOk;
    }
    InputOptions in;
    in.recursive = vm.count("recursive") > 0;
    if (vm.count("input-list")) in.lists = vm["input-list"].as<std::vector<std::string>>();
    const auto args = vm.count("image") ? vm["image"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (args.empty() && in.lists.empty())
      throw UsageError("caption: no image given (see xcaption caption --help)");
    const bool json = vm.count("json") > 0;
    const std::int64_t batch = vm.count("batch") ? vm["batch"].as<std::int64_t>() : kDefaultBatch;
    if (batch < 1) throw UsageError("--batch must be at least 1");
    const ProgressMode progress_mode = parse_progress_mode(vm["progress"].as<std::string>());

    OutputOptions oo;
    auto path_of = [&](const char* key) -> std::optional<std::filesystem::path> {
      if (!vm.count(key)) return std::nullopt;
      return std::filesystem::path(vm[key].as<std::string>());
    };
    oo.jsonl = path_of("jsonl");
    oo.metadata = path_of("metadata");
    oo.csv = path_of("csv");
    oo.coco = path_of("coco");
    oo.coco_ids = path_of("coco-ids");
    if (vm.count("sidecar")) oo.sidecar_ext = vm["sidecar"].as<std::string>();
    oo.sidecar_dir = path_of("sidecar-dir");
    oo.sidecar_mode = sidecar_mode(vm["sidecar-mode"].as<std::string>());
    oo.prefix = vm["prefix"].as<std::string>();
    oo.suffix = vm["suffix"].as<std::string>();
    oo.resume = vm.count("resume") > 0;
    oo.retry_errors = vm.count("retry-errors") > 0;
    oo.force = vm.count("force") > 0;
    if (!vm["sidecar-mode"].defaulted() && !oo.sidecar_ext && !oo.sidecar_dir)
      throw UsageError("--sidecar-mode goes with --sidecar or --sidecar-dir");

    std::vector<std::string> notes;
    std::vector<InputItem> items = collect_inputs(args, in, notes);
    for (const auto& n : notes) std::cerr << "xcaption: " << n << "\n";
    if (items.empty())
      throw FormatError("caption: no image found in the inputs given (a folder is searched for image files; -r "
                        "descends into subfolders)");
    if (vm.count("shard")) {
      const std::optional<std::int64_t> count =
          vm.count("shard-count") ? std::optional(vm["shard-count"].as<std::int64_t>()) : std::nullopt;
      const Shard shard = parse_shard(vm["shard"].as<std::string>(), count);
      std::erase_if(items, [&](const InputItem& i) { return !shard.selects(i); });
    }
    // Usage first: --boxes draws one image's answer, so it refuses anything more.
    const std::string boxes = vm.count("boxes") ? vm["boxes"].as<std::string>() : std::string();
    if (!boxes.empty() && (items.size() != 1 || args.size() != 1 || !in.lists.empty() || oo.jsonl || oo.metadata ||
                           oo.csv || oo.coco || oo.sidecar_ext))
      throw UsageError("--boxes takes exactly one image and no output files");
    // The model first: a folder that fails to load must leave no output file behind (Outputs
    // creates the --jsonl / --metadata files as it opens them).
    CaptionRequest request = caption_request(vm);
    Captioner captioner = load_captioner(vm);
    Outputs outputs(oo);
    const bool to_files = outputs.any_file();
    std::vector<const InputItem*> todo;
    for (const auto& i : items)
      if (!to_files || outputs.needs(i)) todo.push_back(&i);
    const std::int64_t skipped = static_cast<std::int64_t>(items.size() - todo.size());
    const bool several = items.size() > 1 || args.size() != 1 || !in.lists.empty();
    std::optional<CaptionResult> boxed;  // the --boxes image's result
    StopSignals signals;
    Progress progress(static_cast<std::int64_t>(todo.size()), progress_mode);
    if (skipped > 0) progress.note(fmt::format("{} image{} already done, skipped", skipped, skipped == 1 ? "" : "s"));

    std::int64_t failures = 0, successes = 0;
    int first_code = kOk;
    Reader reader(captioner, todo, static_cast<std::size_t>(2 * batch), image_limits(vm));
    bool more = true;
    while (more && g_stop_signal == 0) {
      std::vector<Loaded> chunk;
      while (static_cast<std::int64_t>(chunk.size()) < batch) {
        std::optional<Loaded> l = reader.next();
        if (!l) {
          more = false;
          break;
        }
        chunk.push_back(std::move(*l));
      }
      std::vector<PreparedImage> images;
      for (auto& l : chunk)
        if (l.image) images.push_back(std::move(*l.image));
      const std::vector<CaptionResult> results = captioner.caption_prepared(images, request);
      std::size_t next = 0;
      for (auto& l : chunk) {
        ImageRecord r;
        r.item = l.item;
        if (l.error.empty()) {
          const CaptionResult& c = results[next++];
          r.ok = true;
          r.caption = display_text(c);
          r.json = caption_result_json(l.item->name, c);
          if (!boxes.empty()) boxed = c;
          ++successes;
        } else {
          r.error = l.error;
          r.error_code = l.code;
          r.json = {{"image", l.item->name}, {"error", l.error}, {"error_code", l.code}};
          ++failures;
          if (first_code == kOk) first_code = l.code;
          progress.note("error: " + l.error);
        }
        if (to_files) {
          outputs.write(r);
        } else if (r.ok) {
          progress.clear();
          print_image_result(json ? std::optional(r.json) : std::nullopt, l.item->name, r.caption, several);
        }
        progress.advance(!r.ok);
      }
    }
    for (const auto& n : outputs.finish()) progress.note(n);
    progress.finish();
    if (boxed) {
      if (!boxed->task)
        throw InputError("--boxes draws a task's answer; this model has no tasks (Florence-2 has, e.g. --task <OD>)");
      viz::write_png(boxes, viz::draw_task_shapes(load_image(todo.front()->path), *boxed->task));
    }
    if (g_stop_signal != 0) {
      std::cerr << fmt::format("xcaption: stopped after {} of {} images{}\n", successes + failures, todo.size(),
                               outputs.error_destination().empty() ? "" : "; --resume continues");
      return g_stop_signal == SIGTERM ? 143 : kInterrupted;
    }
    if (failures == 0) return kOk;
    if (successes + failures == 1 && !to_files) return first_code;  // the error line says it all
    const std::string where = outputs.error_destination();
    std::cerr << fmt::format("xcaption: {} of {} images failed{}\n", failures, successes + failures,
                             where.empty() ? " (errors above)" : "; errors recorded in " + where);
    return successes == 0 ? first_code : kSomeFailed;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
