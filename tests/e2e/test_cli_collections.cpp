// `xcaption caption` on collections: folders and lists, the dataset files, resume after SIGKILL,
// shards, batches, signals (issue 12).
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/e2e/cli_runner.hpp"

using namespace xcaption::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kData = XCAPTION_TEST_DATA;
const std::string kTiny = (kData / "tiny-vit-gpt2").string();
const fs::path kImages = kData / "golden_images";

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

std::vector<json> json_lines(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::ptrdiff_t newlines(const fs::path& p) {
  if (!fs::exists(p)) return 0;
  const std::string text = read_file(p);
  return std::count(text.begin(), text.end(), '\n');
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// in/a.png, in/b.png, in/broken.png (not an image), in/notes.md, in/.hidden/c.png, in/sub/d.png,
// in/sub/deeper/E.PNG: five images, one broken, of the three golden images.
void make_tree(const fs::path& in) {
  fs::create_directories(in / "sub" / "deeper");
  fs::create_directories(in / ".hidden");
  fs::copy_file(kImages / "img_64x64.png", in / "a.png");
  fs::copy_file(kImages / "img_45x30.png", in / "b.png");
  std::ofstream(in / "broken.png") << "not a png";
  std::ofstream(in / "notes.md") << "# skipped";
  fs::copy_file(kImages / "img_64x64.png", in / ".hidden" / "c.png");
  fs::copy_file(kImages / "img_23x37_rgba.png", in / "sub" / "d.png");
  fs::copy_file(kImages / "img_45x30.png", in / "sub" / "deeper" / "E.PNG");
}

std::string caption_of(const fs::path& image) {
  const auto r = run_cli("caption --threads 1 --model '" + kTiny + "' " + q(image));
  REQUIRE(r.exit_code == 0);
  return lines_of(r.out).at(0);
}

}  // namespace

TEST_CASE("collections: a folder tree into JSON lines, sidecars, metadata, CSV and COCO", "[cli][collections]") {
  const TempDir tmp("coll-tree");
  const fs::path in = tmp.path / "in";
  make_tree(in);
  const fs::path jsonl = tmp.path / "out.jsonl", meta = in / "metadata.jsonl", csv = tmp.path / "out.csv",
                 coco = tmp.path / "coco.json";
  const auto r = run_cli("caption --threads 1 --progress none --model '" + kTiny + "' -r " + q(in) + " --jsonl " +
                         q(jsonl) + " --sidecar --metadata " + q(meta) + " --csv " + q(csv) + " --coco " + q(coco) +
                         " --prefix 'photo: '");
  INFO(r.err);
  // One image failed, the others succeeded: the documented code 8, and the last stderr line says
  // how many and where.
  CHECK(r.exit_code == 8);
  CHECK(r.out.empty());
  const auto err = lines_of(r.err);
  REQUIRE(!err.empty());
  CHECK(err.back() == "xcaption: 1 of 5 images failed; errors recorded in " + jsonl.string());

  const auto lines = json_lines(jsonl);
  REQUIRE(lines.size() == 5);
  // Sorted by name within each directory, subdirectories in place; hidden and non-images skipped.
  const std::vector<std::string> order = {"a.png", "b.png", "broken.png", "sub/d.png", "sub/deeper/E.PNG"};
  for (std::size_t i = 0; i < order.size(); ++i) CHECK(lines[i]["image"] == (in / order[i]).string());
  CHECK(lines[2]["error_code"] == 3);
  CHECK(lines[2]["error"].get<std::string>().find("broken.png") != std::string::npos);
  CHECK_FALSE(lines[2].contains("caption"));
  for (std::size_t i : {0u, 1u, 3u, 4u}) {
    CHECK(lines[i].contains("token_ids"));
    // The same caption as the image alone.
    CHECK(lines[i]["caption"] == caption_of(lines[i]["image"].get<std::string>()));
  }
  CHECK(read_file(in / "a.txt") == "photo: " + lines[0]["caption"].get<std::string>() + "\n");
  CHECK(fs::exists(in / "sub" / "deeper" / "E.txt"));
  CHECK_FALSE(fs::exists(in / "broken.txt"));
  CHECK_FALSE(fs::exists(in / ".hidden" / "c.txt"));

  const auto m = json_lines(meta);
  REQUIRE(m.size() == 4);
  CHECK(m[0] == json{{"file_name", "a.png"}, {"text", "photo: " + lines[0]["caption"].get<std::string>()}});
  CHECK(m[3]["file_name"] == "sub/deeper/E.PNG");

  const auto rows = lines_of(read_file(csv));
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "file_name,text\r");
  CHECK(rows[1].rfind("in/a.png,", 0) == 0);
  // COCO: ids from the file names' digits; none here, so every image is left out and said so.
  CHECK(json::parse(read_file(coco)).empty());
  CHECK(r.err.find("left out: no id") != std::string::npos);
  // No temporary files left behind.
  for (const auto& e : fs::recursive_directory_iterator(tmp.path))
    CHECK(e.path().filename().string().find("xcaption-tmp") == std::string::npos);
}

TEST_CASE("collections: CSV quoting and COCO ids", "[cli][collections]") {
  const TempDir tmp("coll-coco");
  fs::copy_file(kImages / "img_64x64.png", tmp.path / "COCO_val2014_000000391895.png");
  fs::copy_file(kImages / "img_45x30.png", tmp.path / "photo, \"two\".png");
  const fs::path ann = tmp.write("ann.json", R"({"images": [{"id": 7, "file_name": "photo, \"two\".png"}]})");
  const auto a = run_cli("caption --threads 1 --progress none --model '" + kTiny + "' " + q(tmp.path) + " --coco " +
                         q(tmp.path / "c1.json") + " --csv " + q(tmp.path / "out.csv"));
  REQUIRE(a.exit_code == 0);
  const json c1 = json::parse(read_file(tmp.path / "c1.json"));
  REQUIRE(c1.size() == 1);
  CHECK(c1[0]["image_id"] == 391895);
  const auto rows = lines_of(read_file(tmp.path / "out.csv"));
  REQUIRE(rows.size() == 3);
  CHECK(rows[2].rfind("\"photo, \"\"two\"\".png\",", 0) == 0);
  const auto b = run_cli("caption --threads 1 --progress none --model '" + kTiny + "' " + q(tmp.path) + " --coco " +
                         q(tmp.path / "c2.json") + " --coco-ids " + q(ann));
  REQUIRE(b.exit_code == 0);
  const json c2 = json::parse(read_file(tmp.path / "c2.json"));
  REQUIRE(c2.size() == 1);
  CHECK(c2[0]["image_id"] == 7);
  CHECK(b.err.find("1 image left out") != std::string::npos);
}

TEST_CASE("collections: sidecar modes with existing caption files, and a mirrored sidecar tree", "[cli][collections]") {
  const TempDir tmp("coll-sidecar");
  const fs::path in = tmp.path / "in";
  make_tree(in);
  fs::remove(in / "broken.png");
  std::ofstream(in / "a.txt") << "kept by hand\n";
  const std::string base = "caption --threads 1 --progress none --model '" + kTiny + "' -r " + q(in);
  // skip: the existing file is kept and its image not captioned at all.
  const auto skip = run_cli(base + " --sidecar --jsonl " + q(tmp.path / "skip.jsonl"));
  REQUIRE(skip.exit_code == 0);
  CHECK(read_file(in / "a.txt") == "kept by hand\n");
  const std::string b_caption = read_file(in / "b.txt");
  CHECK(!b_caption.empty());
  // With a --jsonl the image is captioned (the jsonl lacks it) but the sidecar stays.
  CHECK(json_lines(tmp.path / "skip.jsonl").size() == 4);
  const auto only = run_cli(base + " --sidecar --json");
  REQUIRE(only.exit_code == 0);
  CHECK(only.err.find("4 images already done, skipped") != std::string::npos);

  const auto append = run_cli(base + " --sidecar --sidecar-mode append --suffix ' (auto)'");
  REQUIRE(append.exit_code == 0);
  CHECK(read_file(in / "a.txt") == "kept by hand\n" + caption_of(in / "a.png") + " (auto)\n");
  const auto overwrite = run_cli(base + " --sidecar --sidecar-mode overwrite");
  REQUIRE(overwrite.exit_code == 0);
  CHECK(read_file(in / "a.txt") == caption_of(in / "a.png") + "\n");

  const fs::path mirror = tmp.path / "captions";
  const auto dir = run_cli(base + " --sidecar .caption --sidecar-dir " + q(mirror));
  REQUIRE(dir.exit_code == 0);
  CHECK(read_file(mirror / "sub" / "deeper" / "E.caption") == caption_of(in / "sub" / "deeper" / "E.PNG") + "\n");
  CHECK(fs::exists(mirror / "a.caption"));
  CHECK_FALSE(fs::exists(in / "a.caption"));
}

TEST_CASE("collections: batches give the captions of one image at a time", "[cli][collections]") {
  const TempDir tmp("coll-batch");
  const fs::path in = tmp.path / "in";
  make_tree(in);
  const std::string base = "caption --threads 1 --progress none --beams 3 --model '" + kTiny + "' -r " + q(in);
  const auto one = run_cli(base + " --batch 1 --jsonl " + q(tmp.path / "one.jsonl"));
  const auto four = run_cli(base + " --batch 4 --jsonl " + q(tmp.path / "four.jsonl"));
  CHECK(one.exit_code == 8);
  CHECK(four.exit_code == 8);
  const auto a = json_lines(tmp.path / "one.jsonl"), b = json_lines(tmp.path / "four.jsonl");
  REQUIRE(a.size() == 5);
  REQUIRE(b.size() == 5);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i]["image"] == b[i]["image"]);
    CHECK(a[i].value("caption", "") == b[i].value("caption", ""));
    CHECK(a[i].value("token_ids", json()) == b[i].value("token_ids", json()));
  }
}

TEST_CASE("collections: input lists, missing entries, and refusals", "[cli][collections]") {
  const TempDir tmp("coll-list");
  const fs::path list = tmp.write("list.txt", "# images to caption\n\n" + (kImages / "img_45x30.png").string() +
                                                  "\n  \n" + (tmp.path / "missing.png").string() + "\n" +
                                                  (kImages / "img_64x64.png").string() + "\r\n");
  const auto r = run_cli("caption --threads 1 --progress none --model '" + kTiny + "' --input-list " + q(list) +
                         " --jsonl " + q(tmp.path / "out.jsonl"));
  CHECK(r.exit_code == 8);
  const auto lines = json_lines(tmp.path / "out.jsonl");
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["image"] == (kImages / "img_45x30.png").string());
  CHECK(lines[1]["error"].get<std::string>().find("missing.png: no such file") != std::string::npos);
  CHECK(lines[2]["image"] == (kImages / "img_64x64.png").string());
  // stdin as the list
  const fs::path out = tmp.path / "stdout";
  const std::string cmd = "'" + std::string(XCAPTION_CLI_PATH) + "' caption --threads 1 --progress none --model '" +
                          kTiny + "' --input-list - --json < " + q(list) + " > " + q(out) + " 2>/dev/null";
  CHECK(WEXITSTATUS(std::system(cmd.c_str())) == 8);
  CHECK(lines_of(read_file(out)).size() == 2);

  const auto exists = run_cli("caption --model '" + kTiny + "' " + q(kImages) + " --jsonl " + q(tmp.path / "out.jsonl"));
  CHECK(exists.exit_code == 2);
  CHECK(exists.err.find("exists; --resume continues it, --force overwrites it") != std::string::npos);
  const auto no_lines = run_cli("caption --model '" + kTiny + "' " + q(kImages) + " --resume --sidecar");
  CHECK(no_lines.exit_code == 2);
  CHECK(no_lines.err.find("--resume reads") != std::string::npos);
  const auto bad_shard = run_cli("caption --model '" + kTiny + "' " + q(kImages) + " --shard 3/3");
  CHECK(bad_shard.exit_code == 2);
  const auto bad_mode = run_cli("caption --model '" + kTiny + "' " + q(kImages) + " --sidecar --sidecar-mode merge");
  CHECK(bad_mode.exit_code == 2);
}

TEST_CASE("collections: shards split the images with no overlap, also from Slurm and Kubernetes variables",
          "[cli][collections]") {
  const TempDir tmp("coll-shard");
  const fs::path in = tmp.path / "in";
  fs::create_directories(in);
  for (int i = 0; i < 24; ++i) fs::copy_file(kImages / "img_45x30.png", in / ("img_" + std::to_string(i) + ".png"));
  const std::string base = "caption --threads 1 --progress none --max-new-tokens 3 --model '" + kTiny + "' " + q(in);
  std::multiset<std::string> seen;
  std::vector<std::size_t> sizes;
  for (int s = 0; s < 3; ++s) {
    const fs::path out = tmp.path / ("shard" + std::to_string(s) + ".jsonl");
    const auto r = run_cli(base + " --shard " + std::to_string(s) + "/3 --jsonl " + q(out));
    REQUIRE(r.exit_code == 0);
    const auto lines = json_lines(out);
    sizes.push_back(lines.size());
    for (const auto& l : lines) seen.insert(l["image"].get<std::string>());
  }
  CHECK(seen.size() == 24);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 24);  // each image once
  for (auto n : sizes) CHECK(n > 0);
  // The same split from the scheduler's variables (Slurm array 1-3: ids start at the minimum).
  const auto slurm = run_cli(base + " --shard auto --json", "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3");
  REQUIRE(slurm.exit_code == 0);
  CHECK(lines_of(slurm.out).size() == sizes[1]);
  const auto k8s = run_cli(base + " --shard auto --shard-count 3 --json", "JOB_COMPLETION_INDEX=2");
  REQUIRE(k8s.exit_code == 0);
  CHECK(lines_of(k8s.out).size() == sizes[2]);
  const auto none = run_cli(base + " --shard auto", "env -u SLURM_ARRAY_TASK_ID -u JOB_COMPLETION_INDEX");
  CHECK(none.exit_code == 2);
  // The split depends on the path below the folder argument, not where the folder is.
  fs::rename(in, tmp.path / "moved");
  const auto moved = run_cli("caption --threads 1 --progress none --max-new-tokens 3 --model '" + kTiny + "' " +
                             q(tmp.path / "moved") + " --shard 0/3 --json");
  CHECK(lines_of(moved.out).size() == sizes[0]);
}

TEST_CASE("collections: killed with SIGKILL at any moment, a resumed run records every image once",
          "[cli][collections]") {
  const TempDir tmp("coll-kill");
  const fs::path in = tmp.path / "in";
  fs::create_directories(in);
  constexpr int kCount = 120;
  for (int i = 0; i < kCount; ++i) fs::copy_file(kImages / "img_64x64.png", in / fmt::format("img_{:03}.png", i));
  const fs::path jsonl = tmp.path / "out.jsonl", meta = in / "metadata.jsonl";
  const std::vector<std::string> args = {"caption", "--threads", "1", "--progress", "none", "--batch", "2",
                                         "--beams", "3", "--min-new-tokens", "40", "--max-new-tokens", "40",
                                         "--model", kTiny, in.string(), "--jsonl", jsonl.string(),
                                         "--metadata", meta.string(), "--sidecar", "--resume"};
  // Kill at several points of the run, resuming each time, then let it finish.
  for (int round = 0; round < 3; ++round) {
    // Whole lines only: the file may end in the torn line this test appends.
    auto whole = [&] { return newlines(jsonl); };
    const auto before = whole();
    const pid_t pid = spawn_cli(args, tmp.path / "stderr");
    REQUIRE(pid > 0);
    for (int i = 0; i < 400; ++i) {
      if (whole() >= before + 5 + round) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    if (round == 1) {
      // As if the kill had come in the middle of a line.
      std::ofstream(jsonl, std::ios::app) << "{\"caption\":\"a ha";
    }
  }
  // The kills came before the end (so the resumes had work left).
  CHECK(newlines(jsonl) < kCount);
  const pid_t pid = spawn_cli(args, tmp.path / "stderr");
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO(read_file(tmp.path / "stderr"));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const auto lines = json_lines(jsonl);
  std::map<std::string, int> count;
  for (const auto& l : lines) {
    CHECK(l.contains("caption"));
    ++count[l["image"].get<std::string>()];
  }
  CHECK(count.size() == kCount);
  for (const auto& [image, n] : count) {
    INFO(image);
    CHECK(n == 1);
    CHECK(fs::exists(fs::path(image).replace_extension(".txt")));
  }
  std::map<std::string, int> meta_count;
  for (const auto& l : json_lines(meta)) ++meta_count[l["file_name"].get<std::string>()];
  CHECK(meta_count.size() == kCount);
  for (const auto& [name, n] : meta_count) CHECK(n == 1);
}

TEST_CASE("collections: SIGTERM finishes the batch in flight, writes CSV, exits 143", "[cli][collections]") {
  const TempDir tmp("coll-term");
  const fs::path in = tmp.path / "in";
  fs::create_directories(in);
  for (int i = 0; i < 200; ++i) fs::copy_file(kImages / "img_64x64.png", in / fmt::format("img_{:03}.png", i));
  const fs::path jsonl = tmp.path / "out.jsonl", csv = tmp.path / "out.csv";
  const pid_t pid = spawn_cli({"caption", "--threads", "1", "--progress", "none", "--batch", "4", "--beams", "3",
                               "--min-new-tokens", "40", "--max-new-tokens", "40", "--model", kTiny, in.string(),
                               "--jsonl", jsonl.string(), "--csv", csv.string()},
                              tmp.path / "stderr");
  REQUIRE(pid > 0);
  for (int i = 0; i < 400 && !(fs::exists(jsonl) && fs::file_size(jsonl) > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(pid, SIGTERM);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO(read_file(tmp.path / "stderr"));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);
  const auto lines = json_lines(jsonl);
  CHECK(lines.size() % 4 == 0);  // whole batches
  CHECK(lines.size() < 200);
  CHECK(lines_of(read_file(csv)).size() == lines.size() + 1);
  CHECK(read_file(tmp.path / "stderr").find("--resume continues") != std::string::npos);
}

TEST_CASE("collections: a symlink loop is walked once", "[cli][collections]") {
  const TempDir tmp("coll-loop");
  const fs::path in = tmp.path / "in";
  fs::create_directories(in / "sub");
  fs::copy_file(kImages / "img_45x30.png", in / "sub" / "x.png");
  fs::create_directory_symlink("..", in / "sub" / "up");  // in/sub/up -> in
  const auto r = run_cli("caption --threads 1 --progress none --max-new-tokens 3 --model '" + kTiny + "' -r " + q(in) +
                         " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(lines_of(r.out).size() == 1);
  CHECK(r.err.find("already walked") != std::string::npos);
}
