// Hugging Face cache resolution on a fake cache built at test time: refs, two snapshots whose files
// are relative symlinks into blobs/, revisions by ref name and by commit hash, the cache-folder
// settings in their order of precedence, and the message for a model found nowhere.
#include "tests/test_util.hpp"
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>

#include "src/io/hf_cache.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using xcaption::FormatError;
using xcaption::test::TempDir;

namespace {

const std::string kCommitA = "0123456789abcdef0123456789abcdef01234567";
const std::string kCommitB = "fedcba9876543210fedcba9876543210fedcba98";

// An environment made of a map, so that tests never touch the process's variables.
struct FakeEnv {
  std::map<std::string, std::string> vars;
  xcaption::EnvLookup lookup() const {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// <hub>/models--org--name as huggingface_hub lays it out: blobs, snapshots of two commits whose
// config.json are relative links to different blobs, refs/main -> B, refs/v1 -> A (written with a
// trailing newline, as a hand-edited ref might be), refs/refs/pr/1 -> A, refs/stale -> a commit
// with no snapshot, and a .no_exist marker.
fs::path make_fake_repo(const fs::path& hub, const std::string& repo_folder = "models--org--name") {
  const fs::path repo = hub / repo_folder;
  fs::create_directories(repo / "blobs");
  fs::create_directories(repo / "refs" / "refs" / "pr");
  fs::create_directories(repo / ".no_exist" / kCommitB);
  std::ofstream(repo / "blobs" / "aaaa") << R"({"which": "A"})";
  std::ofstream(repo / "blobs" / "bbbb") << R"({"which": "B"})";
  for (const auto& [commit, blob] : {std::pair{kCommitA, "aaaa"}, std::pair{kCommitB, "bbbb"}}) {
    const fs::path snap = repo / "snapshots" / commit;
    fs::create_directories(snap);
    fs::create_symlink(fs::path("..") / ".." / "blobs" / blob, snap / "config.json");
  }
  std::ofstream(repo / "refs" / "main") << kCommitB;
  std::ofstream(repo / "refs" / "v1") << kCommitA << "\n";
  std::ofstream(repo / "refs" / "refs" / "pr" / "1") << kCommitA;
  std::ofstream(repo / "refs" / "stale") << "1111111111111111111111111111111111111111";
  std::ofstream(repo / "refs" / "junk") << "not a hash!";
  std::ofstream(repo / ".no_exist" / kCommitB / "model.safetensors");
  return repo;
}

std::string resolve_error(const std::string& spec, const FakeEnv& env) {
  try {
    xcaption::resolve_model_spec(spec, env.lookup());
  } catch (const FormatError& e) {
    return e.what();
  }
  FAIL("resolving '" << spec << "' did not throw");
  return {};
}

}  // namespace

TEST_CASE("Hub model ids are parsed like huggingface_hub validates them", "[hf_cache]") {
  using xcaption::parse_hub_model_id;
  const auto id = parse_hub_model_id("nlpconnect/vit-gpt2-image-captioning");
  REQUIRE(id);
  CHECK(id->repo_id == "nlpconnect/vit-gpt2-image-captioning");
  CHECK(id->revision == "main");
  CHECK_FALSE(id->revision_given);
  const auto rev = parse_hub_model_id("Salesforce/blip-image-captioning-base@refs/pr/7");
  REQUIRE(rev);
  CHECK(rev->repo_id == "Salesforce/blip-image-captioning-base");
  CHECK(rev->revision == "refs/pr/7");
  CHECK(rev->revision_given);
  CHECK(parse_hub_model_id("a_b/c.d-e@" + kCommitA));
  for (const char* bad : {"", "name", "/abs/path", "./org/name", "../org/name", "org/name/extra", "org//name",
                          "org--x/name", "org/na..me", "-org/name", "org/name.", "org/.name", "org/name.git",
                          "org/name@", "org/name@../x", "org/name@a/../b", "org/name@x y", "org/name@/x",
                          "org/na me", "org/name@refs/pr/"}) {
    INFO(bad);
    CHECK_FALSE(parse_hub_model_id(bad));
  }
  CHECK_FALSE(parse_hub_model_id("org/" + std::string(97, 'n')));
  CHECK(parse_hub_model_id("org/" + std::string(96, 'n')));
  CHECK(xcaption::hub_repo_folder_name("nlpconnect/vit-gpt2-image-captioning") ==
        "models--nlpconnect--vit-gpt2-image-captioning");
}

TEST_CASE("the cache folder follows HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, then ~/.cache", "[hf_cache]") {
  FakeEnv env;
  env.vars = {{"HOME", "/home/u"},
              {"HF_HUB_CACHE", "/a/hub"},
              {"HUGGINGFACE_HUB_CACHE", "/legacy/hub"},
              {"HF_HOME", "/b"},
              {"XDG_CACHE_HOME", "/c"}};
  auto where = [&] { return xcaption::hub_cache_location(env.lookup()); };
  CHECK(where().dir == "/a/hub");
  CHECK(where().source == "HF_HUB_CACHE");
  env.vars.erase("HF_HUB_CACHE");
  CHECK(where().dir == "/legacy/hub");
  CHECK(where().source == "HUGGINGFACE_HUB_CACHE");
  env.vars.erase("HUGGINGFACE_HUB_CACHE");
  CHECK(where().dir == "/b/hub");
  CHECK(where().source == "HF_HOME");
  env.vars["HF_HOME"] = "";  // empty counts as unset
  CHECK(where().dir == "/c/huggingface/hub");
  CHECK(where().source == "XDG_CACHE_HOME");
  env.vars.erase("XDG_CACHE_HOME");
  CHECK(where().dir == "/home/u/.cache/huggingface/hub");
  CHECK(where().source == "default");
  // '~' and $VAR are expanded as huggingface_hub does (expanduser, expandvars); an unknown
  // variable stays as written.
  env.vars["HF_HOME"] = "~/hf";
  CHECK(where().dir == "/home/u/hf/hub");
  env.vars["SCRATCH"] = "/scratch";
  env.vars["HF_HUB_CACHE"] = "$SCRATCH/${USER_UNSET}/x-${SCRATCH}";
  CHECK(where().dir == "/scratch/${USER_UNSET}/x-/scratch");
}

TEST_CASE("a cached model resolves to the snapshot its ref or commit names", "[hf_cache]") {
  TempDir root("hfcache");
  const fs::path hub = root.path / "hub";
  const fs::path repo = make_fake_repo(hub);
  FakeEnv env;
  env.vars = {{"HF_HUB_CACHE", hub.string()}, {"HOME", (root.path / "home").string()}};

  const auto main = xcaption::resolve_model_spec("org/name", env.lookup());
  CHECK(main.from_cache);
  CHECK(main.dir == repo / "snapshots" / kCommitB);
  CHECK(main.repo_id == "org/name");
  CHECK(main.revision == "main");
  CHECK(main.commit == kCommitB);
  // The snapshot's files are the blobs they link to.
  CHECK(xcaption::test::read_file(main.dir / "config.json") == R"({"which": "B"})");

  const auto v1 = xcaption::resolve_model_spec("org/name@v1", env.lookup());
  CHECK(v1.dir == repo / "snapshots" / kCommitA);
  CHECK(v1.commit == kCommitA);
  CHECK(xcaption::test::read_file(v1.dir / "config.json") == R"({"which": "A"})");
  CHECK(xcaption::resolve_model_spec("org/name@refs/pr/1", env.lookup()).commit == kCommitA);
  // A full commit hash names its snapshot directly (no ref needed).
  const auto by_hash = xcaption::resolve_model_spec("org/name@" + kCommitA, env.lookup());
  CHECK(by_hash.dir == repo / "snapshots" / kCommitA);
  CHECK(by_hash.revision == kCommitA);

  // The same cache found through HF_HOME and XDG_CACHE_HOME.
  FakeEnv home;
  home.vars = {{"HF_HOME", root.path.string()}};
  CHECK(xcaption::resolve_model_spec("org/name", home.lookup()).dir == repo / "snapshots" / kCommitB);
  const fs::path xdg = root.path / "xdg";
  make_fake_repo(xdg / "huggingface" / "hub");
  FakeEnv x;
  x.vars = {{"XDG_CACHE_HOME", xdg.string()}};
  CHECK(xcaption::resolve_model_spec("org/name", x.lookup()).dir ==
        xdg / "huggingface" / "hub" / "models--org--name" / "snapshots" / kCommitB);
  // ... and HF_HUB_CACHE wins over both.
  x.vars["HF_HUB_CACHE"] = hub.string();
  CHECK(xcaption::resolve_model_spec("org/name", x.lookup()).dir == repo / "snapshots" / kCommitB);
}

TEST_CASE("an existing folder wins over the cache", "[hf_cache]") {
  TempDir root("hfcache-local");
  make_fake_repo(root.path / "hub");
  fs::create_directories(root.path / "org" / "name");
  FakeEnv env;
  env.vars = {{"HF_HUB_CACHE", (root.path / "hub").string()}};
  const fs::path cwd = fs::current_path();
  fs::current_path(root.path);
  const auto r = xcaption::resolve_model_spec("org/name", env.lookup());
  fs::current_path(cwd);
  CHECK_FALSE(r.from_cache);
  CHECK(r.dir == "org/name");
  // Absolute and ./ paths are never Hub ids.
  CHECK(xcaption::resolve_model_spec(root.path.string(), env.lookup()).dir == root.path);
  CHECK_THAT(resolve_error((root.path / "nope").string(), env), Contains("nope: model folder not found"));
  CHECK_THAT(resolve_error("./org/nope", env), Contains("./org/nope: model folder not found"));
}

TEST_CASE("a model found nowhere gets one message naming every place searched", "[hf_cache]") {
  TempDir root("hfcache-missing");
  const fs::path hub = root.path / "hub";
  const fs::path repo = make_fake_repo(hub);
  FakeEnv env;
  env.vars = {{"HF_HUB_CACHE", hub.string()}};

  const std::string missing = resolve_error("org/other", env);
  CHECK_THAT(missing, Contains("org/other: model not found"));
  CHECK_THAT(missing, Contains(fs::absolute("org/other").string()));  // the plain folder looked at
  CHECK_THAT(missing, Contains(hub.string()));
  CHECK_THAT(missing, Contains("$HF_HUB_CACHE"));
  CHECK_THAT(missing, Contains((hub / "models--org--other").string() + " does not exist"));
  CHECK_THAT(missing, Contains("huggingface-cli download org/other"));
  CHECK_THAT(missing, Contains("git clone https://huggingface.co/org/other"));
  CHECK_THAT(missing, Contains("never downloads"));
  CHECK(missing.find('\n') == std::string::npos);  // one line

  // Unknown revision: the cached refs and snapshots are listed; --revision is suggested.
  const std::string rev = resolve_error("org/name@v2", env);
  CHECK_THAT(rev, Contains("no ref 'v2'"));
  CHECK_THAT(rev, Contains("main -> " + kCommitB.substr(0, 12)));
  CHECK_THAT(rev, Contains("v1 -> " + kCommitA.substr(0, 12)));
  CHECK_THAT(rev, Contains(kCommitA));
  CHECK_THAT(rev, Contains("huggingface-cli download org/name --revision v2"));
  // A ref whose snapshot is gone, and a ref file that holds no hash.
  CHECK_THAT(resolve_error("org/name@stale", env), Contains("refs/stale names commit 1111111111111111111111111111111111111111"));
  CHECK_THAT(resolve_error("org/name@stale", env), Contains("is missing"));
  CHECK_THAT(resolve_error("org/name@junk", env), Contains((repo / "refs" / "junk").string() + " does not hold a commit hash"));
  // The default cache is named with the settings that would move it.
  FakeEnv bare;
  bare.vars = {{"HOME", (root.path / "home").string()}};
  const std::string def = resolve_error("org/name", bare);
  CHECK_THAT(def, Contains((root.path / "home" / ".cache" / "huggingface" / "hub").string()));
  CHECK_THAT(def, Contains("$HF_HUB_CACHE or $HF_HOME"));
}

TEST_CASE("resolve_model and Captioner::load accept cache names (public API)", "[hf_cache]") {
  // The public resolve_model reads the process environment: a folder path keeps working.
  const fs::path tiny = fs::path(XCAPTION_TEST_DATA) / "tiny-vit-gpt2";
  CHECK(xcaption::resolve_model(tiny.string()) == tiny);
  TempDir root("hfcache-env");
  ::setenv("HF_HUB_CACHE", (root.path / "hub").string().c_str(), 1);
  CHECK_THROWS_WITH(xcaption::Captioner::load("org/absent"), Contains("huggingface-cli download org/absent"));
  ::unsetenv("HF_HUB_CACHE");
}
