#include "src/io/hf_cache.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

namespace fs = std::filesystem;

namespace {

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// One part of a repo id: [A-Za-z0-9_.-]{1,96}, word characters at both ends.
bool valid_repo_part(std::string_view s) {
  if (s.empty() || s.size() > 96) return false;
  if (!is_word_char(s.front()) || !is_word_char(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_word_char(c) || c == '-' || c == '.'; });
}

bool valid_revision(std::string_view r) {
  if (r.empty() || r.size() > 256 || r.front() == '/') return false;
  for (char c : r)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
  std::size_t start = 0;
  while (start <= r.size()) {
    const std::size_t end = std::min(r.find('/', start), r.size());
    const std::string_view part = r.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

const char* env_value(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v && *v ? v : nullptr;
}

std::string home_dir(const EnvLookup& env) {
  if (const char* h = env_value(env, "HOME")) return h;
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return "/";
}

// os.path.expandvars(os.path.expanduser(s)) for the forms a cache setting uses: a leading "~" or
// "~/", then $NAME and ${NAME} replaced when the variable is set (left as written otherwise).
std::string expand_path(const std::string& s, const EnvLookup& env) {
  std::string t = s;
  if (t == "~" || t.rfind("~/", 0) == 0) t = home_dir(env) + t.substr(1);
  std::string out;
  for (std::size_t i = 0; i < t.size();) {
    if (t[i] != '$') {
      out += t[i++];
      continue;
    }
    const bool braced = i + 1 < t.size() && t[i + 1] == '{';
    std::size_t j = i + (braced ? 2 : 1);
    const std::size_t name_start = j;
    while (j < t.size() && is_word_char(t[j])) ++j;
    const std::string name = t.substr(name_start, j - name_start);
    if (name.empty() || (braced && (j >= t.size() || t[j] != '}'))) {
      out += t[i++];
      continue;
    }
    const std::size_t after = braced ? j + 1 : j;
    if (const char* v = env(name.c_str()))
      out += v;
    else
      out += t.substr(i, after - i);
    i = after;
  }
  return out;
}

std::string describe_source(const HubCacheLocation& loc) {
  if (loc.source == "HF_HUB_CACHE") return "set by $HF_HUB_CACHE";
  if (loc.source == "HUGGINGFACE_HUB_CACHE") return "set by $HUGGINGFACE_HUB_CACHE";
  if (loc.source == "HF_HOME") return "$HF_HOME/hub";
  if (loc.source == "XDG_CACHE_HOME") return "$XDG_CACHE_HOME/huggingface/hub";
  return "the default; $HF_HUB_CACHE or $HF_HOME choose another";
}

// The commit a ref file holds (huggingface_hub writes the bare hash, no newline), or an error.
std::optional<std::string> read_ref(const fs::path& file, std::string* problem) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    *problem = fmt::format("{} cannot be read", file.string());
    return std::nullopt;
  }
  std::string text(4096, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  const bool ok = !text.empty() && text.size() <= 128 &&
                  std::all_of(text.begin(), text.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
  if (!ok) {
    *problem = fmt::format("{} does not hold a commit hash", file.string());
    return std::nullopt;
  }
  return text;
}

// "main -> 0123abc, v1 -> 4567def; snapshots 0123abc..., 4567def..." for messages.
std::string cached_revisions(const fs::path& repo) {
  std::error_code ec;
  std::vector<std::string> refs, snaps;
  const fs::path refs_dir = repo / "refs";
  if (fs::is_directory(refs_dir, ec))
    for (auto it = fs::recursive_directory_iterator(refs_dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file(ec) || refs.size() >= 10) continue;
      std::string problem;
      const auto commit = read_ref(it->path(), &problem);
      refs.push_back(fmt::format("{} -> {}", it->path().lexically_relative(refs_dir).generic_string(),
                                 commit ? commit->substr(0, 12) : "?"));
    }
  const fs::path snap_dir = repo / "snapshots";
  if (fs::is_directory(snap_dir, ec))
    for (auto it = fs::directory_iterator(snap_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      if (it->is_directory(ec) && snaps.size() < 10) snaps.push_back(it->path().filename().string());
  std::sort(refs.begin(), refs.end());
  std::sort(snaps.begin(), snaps.end());
  if (refs.empty() && snaps.empty()) return "nothing is cached there";
  std::string s;
  if (!refs.empty()) s += fmt::format("refs {}", fmt::join(refs, ", "));
  if (!snaps.empty()) s += fmt::format("{}snapshots {}", s.empty() ? "" : "; ", fmt::join(snaps, ", "));
  return "cached: " + s;
}

}  // namespace

const char* system_env(const char* name) { return std::getenv(name); }

std::optional<HubModelId> parse_hub_model_id(std::string_view spec) {
  HubModelId id;
  std::string_view repo = spec;
  if (const auto at = spec.find('@'); at != std::string_view::npos) {
    repo = spec.substr(0, at);
    const std::string_view rev = spec.substr(at + 1);
    if (!valid_revision(rev)) return std::nullopt;
    id.revision = std::string(rev);
    id.revision_given = true;
  } else {
    id.revision = "main";
  }
  const auto slash = repo.find('/');
  if (slash == std::string_view::npos || repo.find('/', slash + 1) != std::string_view::npos) return std::nullopt;
  const std::string_view org = repo.substr(0, slash), name = repo.substr(slash + 1);
  if (!valid_repo_part(org) || !valid_repo_part(name)) return std::nullopt;
  if (repo.find("--") != std::string_view::npos || repo.find("..") != std::string_view::npos) return std::nullopt;
  if (name.size() >= 4 && name.substr(name.size() - 4) == ".git") return std::nullopt;
  id.repo_id = std::string(repo);
  return id;
}

HubCacheLocation hub_cache_location(const EnvLookup& env) {
  for (const char* var : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"})
    if (const char* v = env_value(env, var)) return {expand_path(v, env), var};
  if (const char* v = env_value(env, "HF_HOME")) return {fs::path(expand_path(v, env)) / "hub", "HF_HOME"};
  if (const char* v = env_value(env, "XDG_CACHE_HOME"))
    return {fs::path(expand_path(v, env)) / "huggingface" / "hub", "XDG_CACHE_HOME"};
  return {fs::path(home_dir(env)) / ".cache" / "huggingface" / "hub", "default"};
}

std::string hub_repo_folder_name(std::string_view repo_id) {
  std::string s = "models";
  std::size_t start = 0;
  while (start <= repo_id.size()) {
    const std::size_t end = std::min(repo_id.find('/', start), repo_id.size());
    s += "--";
    s += repo_id.substr(start, end - start);
    start = end + 1;
  }
  return s;
}

ResolvedModel resolve_model_spec(std::string_view spec_view, const EnvLookup& env) {
  const std::string spec(spec_view);
  std::error_code ec;
  if (!spec.empty() && fs::is_directory(spec, ec)) return {fs::path(spec), false, {}, {}, {}};
  const auto id = parse_hub_model_id(spec);
  if (!id) {
    if (!spec.empty() && fs::exists(spec, ec))
      throw FormatError(fmt::format("{}: not a model folder (it is a file)", spec));
    throw FormatError(fmt::format("{}: model folder not found", spec.empty() ? "''" : spec));
  }

  const HubCacheLocation cache = hub_cache_location(env);
  const fs::path repo = cache.dir / hub_repo_folder_name(id->repo_id);
  std::string problem;
  std::string commit = id->revision;
  const fs::path ref_file = repo / "refs" / id->revision;
  const bool has_ref = fs::is_regular_file(ref_file, ec);
  if (!fs::is_directory(repo, ec)) {
    problem = fmt::format("{} does not exist", repo.string());
  } else {
    std::optional<std::string> ref_commit;
    if (has_ref) ref_commit = read_ref(ref_file, &problem);
    if (!has_ref || ref_commit) {
      if (ref_commit) commit = *ref_commit;
      const fs::path snapshot = repo / "snapshots" / commit;
      if (fs::is_directory(snapshot, ec)) return {snapshot, true, id->repo_id, id->revision, commit};
      if (has_ref)
        problem = fmt::format("refs/{} names commit {}, but {} is missing (an interrupted download?); {}",
                              id->revision, commit, snapshot.string(), cached_revisions(repo));
      else
        problem = fmt::format("{} has no ref '{}' and no snapshot '{}' ({})", repo.string(), id->revision,
                              id->revision, cached_revisions(repo));
    }
  }
  const std::string rev_flag = id->revision_given ? " --revision " + id->revision : "";
  throw FormatError(fmt::format(
      "{}: model not found. Searched: the folder {} ({}); the Hugging Face cache {} ({}): {}. "
      "xcaption never downloads: get the model with `huggingface-cli download {}{}` (into that cache), "
      "or `git clone https://huggingface.co/{}` and pass the clone's folder to --model",
      spec, fs::absolute(spec, ec).string(), fs::exists(spec, ec) ? "a file, not a folder" : "no such folder",
      cache.dir.string(), describe_source(cache), problem, id->repo_id,
      rev_flag, id->repo_id));
}

}  // namespace xcaption
