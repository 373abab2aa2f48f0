// Captioning collections (`xcaption caption` on folders and lists): which images, which share of
// them (shards), and the files dataset tools read (JSON lines, sidecar captions, ImageFolder
// metadata.jsonl, CSV, COCO results), written so that a run killed at any moment and resumed
// ends with every image recorded exactly once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xcaption::cli {

// ---------------------------------------------------------------------------------------------
// Inputs

/// One image to caption.
struct InputItem {
  std::filesystem::path path;      // what is opened
  std::string name;                // how it is reported ("image" in the outputs): the path as given
  std::filesystem::path root;      // the directory argument it was found under; empty for files
  std::filesystem::path relative;  // path below root (files given directly: the path as given)
  bool exists = true;              // false: a named file or list entry that is not there
};

struct InputOptions {
  bool recursive = false;
  std::vector<std::string> lists;  // --input-list files, "-" = stdin
};

/// True for the file extensions OpenCV decodes (case-insensitive): jpg, jpeg, jpe, png, bmp,
/// dib, webp, tif, tiff, jp2, pbm, pgm, ppm, pnm, pxm, pfm, sr, ras, exr, hdr, pic.
bool is_image_file_name(const std::filesystem::path& path);

/// The images named by `args` (files and directories) and the lists, in a deterministic order:
/// arguments in order, each directory's entries sorted by name (subdirectories, with
/// `recursive`, at their place in that order), list entries in list order. In directories,
/// hidden entries (names starting with '.') and files without an image extension are skipped;
/// a directory reached twice (a symlink loop, or two arguments) is walked once. Named files are
/// kept as named (twice if named twice), whatever their extension (OpenCV decides). With output
/// files, an image already recorded is not captioned again (Outputs::needs).
/// Notes about skipped entries go to `notes`. Throws FormatError for an unreadable list file
/// and UsageError-style InputError for an empty selection is left to the caller.
std::vector<InputItem> collect_inputs(const std::vector<std::string>& args, const InputOptions& options,
                                      std::vector<std::string>& notes);

/// --shard I/N: the images whose stable hash (64-bit FNV-1a of the generic path string of
/// InputItem::relative) is I modulo N. The same inputs split the same way on every machine.
struct Shard {
  std::int64_t index = 0, count = 1;
  bool selects(const InputItem& item) const;
};

/// Parses "I/N" (0 <= I < N) or "auto": SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
/// SLURM_ARRAY_TASK_COUNT (Slurm job arrays), else JOB_COMPLETION_INDEX of `shard_count`
/// (Kubernetes Indexed Jobs). Throws UsageError with what is missing.
Shard parse_shard(const std::string& spec, std::optional<std::int64_t> shard_count);

std::uint64_t stable_hash(const std::string& text);

// ---------------------------------------------------------------------------------------------
// Outputs

/// The result of one image.
struct ImageRecord {
  const InputItem* item = nullptr;
  bool ok = false;
  std::string caption;
  nlohmann::json json;  // the --json object (ok) or {"image", "error", "error_code"}
  std::string error;
  int error_code = 0;
};

enum class SidecarMode { Skip, Overwrite, Append };

struct OutputOptions {
  std::optional<std::filesystem::path> jsonl, metadata, csv, coco, coco_ids;
  std::optional<std::string> sidecar_ext;  // ".txt"
  std::optional<std::filesystem::path> sidecar_dir;
  SidecarMode sidecar_mode = SidecarMode::Skip;
  std::string prefix, suffix;  // around the caption in sidecar, metadata and CSV files
  bool resume = false, retry_errors = false, force = false;
};

/// Every output file of one run. Line outputs (JSON lines, metadata) are appended one whole line
/// per image with a single write(2) and flushed as the image finishes; CSV and COCO are written
/// whole, to a temporary name renamed over the target, by finish(). Not thread-safe.
class Outputs {
 public:
  /// Opens the outputs. With `resume`, reads the existing JSON lines / metadata files (a torn last
  /// line, from a killed run, is cut off; with `retry_errors`, earlier error lines are dropped so
  /// that those images are tried again). Without `resume` an existing line output is refused
  /// unless `force`. Throws UsageError / FormatError naming the file.
  explicit Outputs(OutputOptions options);
  ~Outputs();

  bool any_file() const;
  /// Whether `item` still needs captioning: some output lacks it (an existing sidecar counts as
  /// done in skip mode).
  bool needs(const InputItem& item) const;
  /// Records one image's result in every output that lacks it. Throws FormatError naming the file
  /// on a write error.
  void write(const ImageRecord& record);
  /// Writes CSV and COCO (with the captions of earlier runs read at resume) and syncs the line
  /// files. Returns notes for stderr (e.g. COCO images without an id).
  std::vector<std::string> finish();
  /// Images already recorded by earlier runs (resume).
  std::int64_t resumed() const { return static_cast<std::int64_t>(previous_.size()); }
  /// Where errors are recorded, for the last stderr line ("" when only on stderr).
  std::string error_destination() const;

 private:
  struct LineFile;
  std::filesystem::path sidecar_path(const InputItem& item) const;
  std::string decorated(const std::string& caption) const;
  void write_sidecar(const InputItem& item, const std::string& caption);

  OutputOptions o_;
  std::unique_ptr<LineFile> jsonl_, metadata_;
  // For CSV and COCO: every successful image, this run's and earlier runs', by name.
  std::map<std::string, std::string> captions_;   // name -> caption
  std::map<std::string, std::string> csv_names_;  // name -> file_name column
  std::vector<std::string> order_;                // names in the order first recorded
  std::set<std::string> previous_;
  std::map<std::string, std::int64_t> coco_ids_;  // file name (as in the annotations) -> id
};

/// Writes `text` to `path` through a temporary sibling renamed over it (a reader never sees a
/// partial file). Creates missing parent directories. Throws FormatError naming the file.
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

/// A CSV field quoted per RFC 4180 when it holds a comma, quote, CR or LF.
std::string csv_field(const std::string& text);

/// The last run of digits of a file stem as a COCO image id ("COCO_val2014_000000391895" -> 391895).
std::optional<std::int64_t> coco_id_from_stem(const std::filesystem::path& path);

}  // namespace xcaption::cli
