#include "src/cli/collection.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

struct DirKey {
  dev_t dev;
  ino_t ino;
  bool operator<(const DirKey& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

class Collector {
 public:
  Collector(const InputOptions& o, std::vector<std::string>& notes) : o_(o), notes_(notes) {}

  void add_argument(const std::string& arg) {
    const fs::path p(arg);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      walk(p, p, true);
      return;
    }
    add_file(p, {}, p, fs::exists(p, ec));
  }

  void add_list(const std::string& list) {
    std::istream* in = &std::cin;
    std::ifstream file;
    if (list != "-") {
      file.open(list);
      if (!file) throw FormatError(fmt::format("{}: cannot open the input list: {}", list, std::strerror(errno)));
      in = &file;
    }
    std::string line;
    while (std::getline(*in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      add_argument(line);
    }
    if (in->bad()) throw FormatError(fmt::format("{}: read error in the input list", list == "-" ? "stdin" : list));
  }

  std::vector<InputItem> take() { return std::move(items_); }

 private:
  void add_file(const fs::path& path, const fs::path& root, const fs::path& relative, bool exists) {
    items_.push_back({path, path.generic_string(), root, relative, exists});
  }

  void walk(const fs::path& dir, const fs::path& root, bool top) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      notes_.push_back(fmt::format("{}: cannot read the directory: {}", dir.string(), std::strerror(errno)));
      return;
    }
    if (!visited_.insert({st.st_dev, st.st_ino}).second) {
      notes_.push_back(fmt::format("{}: directory already walked (a symlink loop or a repeated argument), skipped",
                                   dir.string()));
      return;
    }
    std::vector<fs::path> entries;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
    if (ec) notes_.push_back(fmt::format("{}: cannot list the directory: {}", dir.string(), ec.message()));
    std::sort(entries.begin(), entries.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
    for (const auto& e : entries) {
      if (hidden(e)) continue;
      std::error_code dir_ec;
      if (fs::is_directory(e, dir_ec)) {
        if (o_.recursive) walk(e, root, false);
        continue;
      }
      if (!is_image_file_name(e)) continue;
      add_file(e, root, e.lexically_relative(root), true);
    }
    (void)top;
  }

  const InputOptions& o_;
  std::vector<std::string>& notes_;
  std::vector<InputItem> items_;
  std::set<DirKey> visited_;
};

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_all(int fd, const std::string& text, const fs::path& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw FormatError(fmt::format("{}: write failed: {}", path.string(), std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
}

// The path of `image` relative to the folder of `file` (ImageFolder's file_name).
std::string relative_to_folder_of(const fs::path& image, const fs::path& file) {
  const fs::path folder = fs::absolute(file).lexically_normal().parent_path();
  return fs::absolute(image).lexically_normal().lexically_relative(folder).generic_string();
}

}  // namespace

bool is_image_file_name(const fs::path& path) {
  static const std::set<std::string> extensions = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp",
                                                   ".tif", ".tiff", ".jp2", ".pbm", ".pgm", ".ppm", ".pnm",
                                                   ".pxm", ".pfm", ".sr",  ".ras", ".exr", ".hdr", ".pic"};
  return extensions.count(lower(path.extension().string())) > 0;
}

std::vector<InputItem> collect_inputs(const std::vector<std::string>& args, const InputOptions& options,
                                      std::vector<std::string>& notes) {
  Collector c(options, notes);
  for (const auto& a : args) c.add_argument(a);
  for (const auto& l : options.lists) c.add_list(l);
  return c.take();
}

std::uint64_t stable_hash(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool Shard::selects(const InputItem& item) const {
  return count <= 1 || static_cast<std::int64_t>(stable_hash(item.relative.generic_string()) %
                                                 static_cast<std::uint64_t>(count)) == index;
}

Shard parse_shard(const std::string& spec, std::optional<std::int64_t> shard_count) {
  auto number = [](const char* what, const std::string& text) {
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty())
      throw UsageError(fmt::format("--shard: {} '{}' is not an integer", what, text));
    return static_cast<std::int64_t>(v);
  };
  Shard s;
  if (spec == "auto") {
    auto env = [](const char* name) -> std::optional<std::string> {
      const char* v = std::getenv(name);
      if (!v || !*v) return std::nullopt;
      return std::string(v);
    };
    if (auto id = env("SLURM_ARRAY_TASK_ID")) {
      const auto count = env("SLURM_ARRAY_TASK_COUNT");
      if (!count) throw UsageError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not");
      const std::int64_t min = env("SLURM_ARRAY_TASK_MIN") ? number("SLURM_ARRAY_TASK_MIN", *env("SLURM_ARRAY_TASK_MIN")) : 0;
      s.index = number("SLURM_ARRAY_TASK_ID", *id) - min;
      s.count = number("SLURM_ARRAY_TASK_COUNT", *count);
    } else if (auto index = env("JOB_COMPLETION_INDEX")) {
      if (!shard_count)
        throw UsageError("--shard auto: JOB_COMPLETION_INDEX is set; give the number of shards with --shard-count N");
      s.index = number("JOB_COMPLETION_INDEX", *index);
      s.count = *shard_count;
    } else {
      throw UsageError("--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX "
                       "(Kubernetes Indexed Job) is set");
    }
  } else {
    const auto slash = spec.find('/');
    if (slash == std::string::npos) throw UsageError(fmt::format("--shard: expected I/N or auto, got '{}'", spec));
    s.index = number("index", spec.substr(0, slash));
    s.count = number("count", spec.substr(slash + 1));
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count)
    throw UsageError(fmt::format("--shard: index {} of {} shards; the index must be in [0, count)", s.index, s.count));
  return s;
}

// ---------------------------------------------------------------------------------------------

struct Outputs::LineFile {
  fs::path path;
  bool metadata = false;  // keys by "file_name" instead of "image"
  int fd = -1;
  std::set<std::string> ok, failed;  // keys recorded by earlier runs
  std::map<std::string, std::string> texts;  // key -> caption / text of earlier runs

  LineFile(fs::path p, bool is_metadata, const OutputOptions& o, std::vector<std::string>& notes)
      : path(std::move(p)), metadata(is_metadata) {
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    if (exists && !fs::is_regular_file(path, ec))
      throw FormatError(fmt::format("{}: exists and is not a regular file", path.string()));
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
    if (exists && !o.resume) {
      if (!o.force)
        throw UsageError(fmt::format("{}: exists; --resume continues it, --force overwrites it", path.string()));
      flags |= O_TRUNC;
    }
    if (exists && o.resume) read_previous(o, notes);
    if (!path.parent_path().empty()) fs::create_directories(path.parent_path(), ec);
    fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) throw FormatError(fmt::format("{}: cannot open for writing: {}", path.string(), std::strerror(errno)));
  }
  ~LineFile() {
    if (fd >= 0) ::close(fd);
  }

  void read_previous(const OutputOptions& o, std::vector<std::string>& notes) {
    std::string text = read_all(path);
    const auto last_newline = text.rfind('\n');
    const std::size_t whole = last_newline == std::string::npos ? 0 : last_newline + 1;
    if (whole < text.size()) {
      // A line cut short by a killed run: drop it, its image is captioned again.
      notes.push_back(fmt::format("{}: the last line was incomplete (an interrupted run) and was removed", path.string()));
      if (::truncate(path.c_str(), static_cast<off_t>(whole)) != 0)
        throw FormatError(fmt::format("{}: cannot cut the incomplete last line: {}", path.string(), std::strerror(errno)));
      text.resize(whole);
    }
    std::string kept;
    std::istringstream lines(text);
    std::string line;
    std::int64_t number = 0, dropped = 0;
    const char* key_name = metadata ? "file_name" : "image";
    while (std::getline(lines, line)) {
      ++number;
      if (line.empty()) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const json::parse_error&) {
        throw FormatError(fmt::format("{}: line {} is not JSON; not an output of xcaption caption?", path.string(), number));
      }
      if (!j.is_object() || !j.contains(key_name) || !j[key_name].is_string())
        throw FormatError(fmt::format("{}: line {} has no \"{}\" string", path.string(), number, key_name));
      const std::string key = j[key_name].get<std::string>();
      if (j.contains("error")) {
        if (o.retry_errors) {
          ++dropped;
          continue;
        }
        failed.insert(key);
      } else {
        ok.insert(key);
        const char* field = metadata ? "text" : "caption";
        if (j.contains(field) && j[field].is_string()) texts[key] = j[field].get<std::string>();
      }
      kept += line + "\n";
    }
    if (dropped > 0) {
      write_file_atomic(path, kept);
      notes.push_back(fmt::format("{}: {} earlier error{} removed, to be tried again", path.string(), dropped,
                                  dropped == 1 ? "" : "s"));
    }
  }

  bool has(const std::string& key) const { return ok.count(key) || failed.count(key); }

  void append(const json& j) { write_all(fd, j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", path); }
};

Outputs::Outputs(OutputOptions options) : o_(std::move(options)) {
  std::vector<std::string> notes;
  if (o_.resume && !o_.jsonl && !o_.metadata)
    throw UsageError("--resume reads the earlier run's --jsonl or --metadata file: give one of them");
  if (o_.retry_errors && !o_.resume) throw UsageError("--retry-errors goes with --resume");
  if (o_.sidecar_dir && !o_.sidecar_ext) o_.sidecar_ext = ".txt";
  if (o_.sidecar_ext && !o_.sidecar_ext->empty() && (*o_.sidecar_ext)[0] != '.') *o_.sidecar_ext = "." + *o_.sidecar_ext;
  if (o_.sidecar_ext && (*o_.sidecar_ext == "." || o_.sidecar_ext->find('/') != std::string::npos))
    throw UsageError(fmt::format("--sidecar: '{}' is not a file extension", *o_.sidecar_ext));
  if (o_.coco_ids && !o_.coco) throw UsageError("--coco-ids goes with --coco");
  if (o_.jsonl) jsonl_ = std::make_unique<LineFile>(*o_.jsonl, false, o_, notes);
  if (o_.metadata) metadata_ = std::make_unique<LineFile>(*o_.metadata, true, o_, notes);
  if (o_.coco_ids) {
    const std::string text = read_all(*o_.coco_ids);
    json a;
    try {
      a = json::parse(text);
    } catch (const json::parse_error& e) {
      throw FormatError(fmt::format("{}: invalid JSON: {}", o_.coco_ids->string(), e.what()));
    }
    if (!a.is_object() || !a.contains("images") || !a["images"].is_array())
      throw FormatError(fmt::format("{}: expected a COCO annotations object with an \"images\" list", o_.coco_ids->string()));
    for (const auto& im : a["images"]) {
      if (!im.is_object() || !im.contains("id") || !im["id"].is_number_integer() || !im.contains("file_name") ||
          !im["file_name"].is_string())
        throw FormatError(fmt::format("{}: an \"images\" entry without an integer \"id\" and a \"file_name\"",
                                      o_.coco_ids->string()));
      coco_ids_[fs::path(im["file_name"].get<std::string>()).filename().string()] = im["id"].get<std::int64_t>();
    }
  }
  if (jsonl_)
    for (const auto& [name, caption] : jsonl_->texts) {
      captions_[name] = caption;
      previous_.insert(name);
    }
  for (const auto& n : notes) std::cerr << "xcaption: " << n << "\n";
}

Outputs::~Outputs() = default;

bool Outputs::any_file() const {
  return o_.jsonl || o_.metadata || o_.csv || o_.coco || o_.sidecar_ext;
}

fs::path Outputs::sidecar_path(const InputItem& item) const {
  fs::path p = item.path;
  if (o_.sidecar_dir) p = *o_.sidecar_dir / (item.root.empty() ? item.path.filename() : item.relative);
  p.replace_extension(*o_.sidecar_ext);
  return p;
}

std::string Outputs::decorated(const std::string& caption) const { return o_.prefix + caption + o_.suffix; }

bool Outputs::needs(const InputItem& item) const {
  const std::string meta_key = metadata_ ? relative_to_folder_of(item.path, *o_.metadata) : std::string();
  // An error recorded in the JSON lines settles the image (unless retried).
  if (jsonl_ && jsonl_->failed.count(item.name)) return false;
  const bool in_lines = (jsonl_ && jsonl_->ok.count(item.name)) || (metadata_ && metadata_->ok.count(meta_key));
  if (jsonl_ && !jsonl_->has(item.name)) return true;
  if (metadata_ && !metadata_->has(meta_key)) return true;
  if (o_.sidecar_ext && !in_lines) {
    std::error_code ec;
    if (o_.sidecar_mode != SidecarMode::Skip || !fs::exists(sidecar_path(item), ec)) return true;
  }
  if ((o_.csv || o_.coco) && !captions_.count(item.name) && !in_lines) return true;
  return false;
}

void Outputs::write_sidecar(const InputItem& item, const std::string& caption) {
  const fs::path p = sidecar_path(item);
  std::error_code ec;
  const bool exists = fs::exists(p, ec);
  if (exists && o_.sidecar_mode == SidecarMode::Skip) return;
  std::string text = decorated(caption);
  if (exists && o_.sidecar_mode == SidecarMode::Append) {
    std::string old = read_all(p);
    while (!old.empty() && (old.back() == '\n' || old.back() == '\r' || old.back() == ' ')) old.pop_back();
    if (!old.empty()) text = old + "\n" + text;  // one caption per line
  }
  write_file_atomic(p, text + "\n");
}

void Outputs::write(const ImageRecord& r) {
  const InputItem& item = *r.item;
  const std::string meta_key = metadata_ ? relative_to_folder_of(item.path, *o_.metadata) : std::string();
  const bool in_lines = (jsonl_ && jsonl_->ok.count(item.name)) || (metadata_ && metadata_->ok.count(meta_key));
  // Order matters for resuming: the sidecar before the line files, the metadata before the JSON
  // lines, so that a line in a later file proves the earlier outputs were written.
  if (r.ok) {
    if (o_.sidecar_ext && !in_lines) write_sidecar(item, r.caption);
    if (metadata_ && !metadata_->has(meta_key)) {
      metadata_->append(json{{"file_name", meta_key}, {"text", decorated(r.caption)}});
      metadata_->ok.insert(meta_key);
    }
    if (!captions_.count(item.name)) order_.push_back(item.name);
    captions_[item.name] = r.caption;
  }
  if (jsonl_ && !jsonl_->has(item.name)) {
    jsonl_->append(r.json);
    (r.ok ? jsonl_->ok : jsonl_->failed).insert(item.name);
  }
}

std::vector<std::string> Outputs::finish() {
  std::vector<std::string> notes;
  for (auto* f : {jsonl_.get(), metadata_.get()})
    if (f && ::fsync(f->fd) != 0 && errno != EINVAL)
      throw FormatError(fmt::format("{}: fsync failed: {}", f->path.string(), std::strerror(errno)));
  // Earlier runs' captions first (in name order), then this run's in the order they finished.
  std::vector<std::string> names;
  for (const auto& n : previous_)
    if (std::find(order_.begin(), order_.end(), n) == order_.end()) names.push_back(n);
  names.insert(names.end(), order_.begin(), order_.end());
  if (o_.csv) {
    std::string text = "file_name,text\r\n";
    for (const auto& n : names)
      text += csv_field(relative_to_folder_of(n, *o_.csv)) + "," + csv_field(decorated(captions_[n])) + "\r\n";
    write_file_atomic(*o_.csv, text);
  }
  if (o_.coco) {
    json results = json::array();
    std::int64_t missing = 0;
    for (const auto& n : names) {
      std::optional<std::int64_t> id;
      if (o_.coco_ids) {
        auto it = coco_ids_.find(fs::path(n).filename().string());
        if (it != coco_ids_.end()) id = it->second;
      } else {
        id = coco_id_from_stem(n);
      }
      if (!id) {
        ++missing;
        continue;
      }
      results.push_back({{"image_id", *id}, {"caption", captions_[n]}});
    }
    write_file_atomic(*o_.coco, results.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
    if (missing)
      notes.push_back(fmt::format("{}: {} image{} left out: no id ({})", o_.coco->string(), missing, missing == 1 ? "" : "s",
                                  o_.coco_ids ? "file name not in " + o_.coco_ids->string() : "no digits in the file name"));
  }
  return notes;
}

std::string Outputs::error_destination() const { return o_.jsonl ? o_.jsonl->string() : std::string(); }

void write_file_atomic(const fs::path& path, const std::string& text) {
  std::error_code ec;
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  tmp.replace_filename(fmt::format(".{}.xcaption-tmp-{}", path.filename().string(), ::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw FormatError(fmt::format("{}: cannot write: {}", path.string(), std::strerror(errno)));
  try {
    write_all(fd, text, path);
  } catch (...) {
    ::close(fd);
    fs::remove(tmp, ec);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    fs::remove(tmp, ec);
    throw FormatError(fmt::format("{}: cannot replace: {}", path.string(), std::strerror(err)));
  }
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::optional<std::int64_t> coco_id_from_stem(const fs::path& path) {
  // The last run of digits: COCO names carry the year too ("COCO_val2014_000000391895").
  const std::string stem = path.stem().string();
  auto end = stem.find_last_of("0123456789");
  if (end == std::string::npos) return std::nullopt;
  auto begin = stem.find_last_not_of("0123456789", end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  std::string digits = stem.substr(begin, end + 1 - begin);
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size() - 1));
  if (digits.size() > 18) return std::nullopt;
  return std::stoll(digits);
}

}  // namespace xcaption::cli
