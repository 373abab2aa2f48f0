// Models already downloaded by transformers / huggingface_hub, found by name in the local Hugging
// Face cache. Nothing here touches the network.
//
// Cache layout (ref: huggingface_hub constants.py, file_download.py `try_to_load_from_cache`,
// `_cache_commit_hash_for_specific_revision`, `_create_symlink`):
//
//   <cache>/models--ORG--NAME/
//     refs/<ref>                a file holding the 40-hex commit that <ref> pointed at when it was
//                               last resolved (no newline); <ref> is a branch, tag or short hash and
//                               may contain '/' (refs/pr/1 is the file refs/refs/pr/1)
//     snapshots/<commit>/...    the files of that commit, as relative symlinks into ../../blobs/
//                               (plain copies where symlinks are not available)
//     blobs/<etag>              file contents, shared between snapshots
//     .no_exist/<commit>/<f>    empty markers: file f is known not to exist at that commit (so
//                               transformers does not ask the Hub again); not a snapshot, ignored
//
// The cache folder is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (its legacy name), else
// $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub, with '~' and
// $VAR expanded as huggingface_hub does (os.path.expanduser + expandvars). An empty variable counts
// as unset.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace xcaption {

/// Looks up an environment variable; nullptr when unset. Tests pass their own.
using EnvLookup = std::function<const char*(const char*)>;
/// std::getenv.
const char* system_env(const char* name);

/// "ORG/NAME" or "ORG/NAME@REVISION" split into its parts.
struct HubModelId {
  std::string repo_id;   // "ORG/NAME"
  std::string revision;  // "main" when not given
  bool revision_given = false;
};

/// Parses `spec` as a Hub model id: exactly one '/' before any '@'; ORG and NAME of letters,
/// digits, '-', '_' and '.', each starting and ending with a letter, digit or '_', NAME at most 96
/// characters, no "--" or ".." anywhere and no ".git" ending (huggingface_hub `REPO_ID_REGEX`,
/// `validate_repo_id`); REVISION non-empty, printable, without whitespace, a leading '/', or a
/// "." / ".." path component. nullopt for anything else (an absolute or ./ path, a bare name).
std::optional<HubModelId> parse_hub_model_id(std::string_view spec);

/// Where the cache is and which setting chose it ("HF_HUB_CACHE", "HF_HOME", ... or "default").
struct HubCacheLocation {
  std::filesystem::path dir;
  std::string source;
};
HubCacheLocation hub_cache_location(const EnvLookup& env = system_env);

/// "models--ORG--NAME".
std::string hub_repo_folder_name(std::string_view repo_id);

/// Where a model spec was found.
struct ResolvedModel {
  std::filesystem::path dir;  // the folder to load
  bool from_cache = false;
  std::string repo_id, revision, commit;  // from_cache only
};

/// The folder `spec` names: `spec` itself when it is an existing folder (a plain path always wins);
/// else, when `spec` parses as ORG/NAME[@REVISION], the snapshot of that revision in the cache:
/// refs/<REVISION> names the commit (REVISION defaults to "main"), or REVISION is itself a commit
/// with a snapshot folder. Otherwise throws FormatError, one line naming every place searched
/// (the folder, the cache folder and the setting that chose it, the missing ref or snapshot and
/// the revisions that are cached) and how to get the model (`huggingface-cli download ORG/NAME`
/// or `git clone https://huggingface.co/ORG/NAME`). A spec that is no Hub id and no folder gives
/// "<spec>: model folder not found".
ResolvedModel resolve_model_spec(std::string_view spec, const EnvLookup& env = system_env);

}  // namespace xcaption
