// The attend and video commands on the tiny checkpoints and the sample video: output shapes,
// files, errors, exit codes and Ctrl-C.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "tests/e2e/cli_runner.hpp"
#include "tests/test_util.hpp"

extern char** environ;

namespace fs = std::filesystem;
using namespace xcaption::test;
using nlohmann::json;

namespace {
const fs::path kData = XCAPTION_TEST_DATA;
const std::string kTiny = (kData / "tiny-vit-gpt2").string();
const std::string kTinyB = (kData / "tiny-vit-gpt2-b").string();
const std::string kImage = (kData / "golden_images" / "img_45x30.png").string();  // 45 x 30: not square
const std::string kVideo = (fs::path(XCAPTION_SOURCE_DIR) / "samples" / "data" / "shapes.mp4").string();

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Parses SubRip text into (start, end, text) in seconds, checking the grammar on the way.
struct Cue {
  double start, end;
  std::string text;
};
std::vector<Cue> parse_srt(const std::string& srt) {
  const std::regex timing(R"((\d{2,}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2,}):(\d{2}):(\d{2}),(\d{3}))");
  std::vector<Cue> cues;
  for (const auto& b : blocks(srt)) {
    REQUIRE(b.size() == 3);
    CHECK(b[0] == std::to_string(cues.size() + 1));
    std::smatch m;
    REQUIRE(std::regex_match(b[1], m, timing));
    auto t = [&](int i) {
      return std::stoi(m[i]) * 3600.0 + std::stoi(m[i + 1]) * 60.0 + std::stoi(m[i + 2]) + std::stoi(m[i + 3]) / 1000.0;
    };
    cues.push_back({t(1), t(5), b[2]});
  }
  return cues;
}
}  // namespace

TEST_CASE("attend --json: image, caption, grid and one normalised map per generated token", "[cli]") {
  const auto r = run_cli("attend --threads 1 --json --model '" + kTiny + "' '" + kImage + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  CHECK(j.size() == 5);
  CHECK(j["prompt_ids"] == json::array({1}));  // the decoder start token alone
  CHECK(j["image"] == kImage);
  CHECK(j["grid"] == json::array({4, 4}));
  // Same tokens as `caption --json`.
  const auto c = run_cli("caption --threads 1 --json --model '" + kTiny + "' '" + kImage + "'");
  REQUIRE(c.exit_code == 0);
  const json cj = json::parse(c.out);
  CHECK(j["caption"] == cj["caption"]);
  REQUIRE(j["tokens"].size() == cj["token_ids"].size());
  for (std::size_t i = 0; i < j["tokens"].size(); ++i) {
    const json& t = j["tokens"][i];
    CHECK(t.size() == 3);
    CHECK(t["id"] == cj["token_ids"][i]);
    CHECK(t["token"] == cj["tokens"][i]);
    REQUIRE(t["map"].size() == 4);
    double sum = 0;
    for (const auto& row : t["map"]) {
      REQUIRE(row.size() == 4);
      for (const auto& v : row) {
        CHECK(v.get<double>() >= 0.0);
        sum += v.get<double>();
      }
    }
    CHECK(sum == Approx(1.0).epsilon(1e-5));
  }
  // Map values are printed as floats (the shortest decimal of the float, <= 9 significant digits),
  // not as the 17-digit expansions of their double widening. nlohmann's double printer is not
  // always shortest (a rare value still comes out with 17 digits), hence a share, not all.
  const std::regex number(R"([0-9]\.[0-9]*(e-?[0-9]+)?)");
  const std::string maps = r.out.substr(r.out.find("\"tokens\""));
  std::size_t values = 0, short_ones = 0, longest = 0;
  for (std::sregex_iterator it(maps.begin(), maps.end(), number), end; it != end; ++it) {
    std::string digits = it->str().substr(0, it->str().find('e'));
    digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
    digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
    ++values;
    short_ones += digits.size() <= 9;
    longest = std::max(longest, digits.size());
  }
  REQUIRE(values >= 16);
  CHECK(short_ones >= values * 9 / 10);
  CHECK(longest >= 4);  // and not rounded coarsely
  // Different selections give different maps; one JSON line per image.
  const auto l1 = run_cli("attend --threads 1 --json --layer 1 --head 0 --model '" + kTiny + "' '" + kImage + "' '" +
                          kImage + "'");
  REQUIRE(l1.exit_code == 0);
  std::istringstream lines(l1.out);
  std::string first, second, extra;
  REQUIRE(std::getline(lines, first));
  REQUIRE(std::getline(lines, second));
  CHECK_FALSE(std::getline(lines, extra));
  CHECK(json::parse(first)["tokens"][0]["map"] != j["tokens"][0]["map"]);
  const auto ro = run_cli("attend --threads 1 --json --rollout --model '" + kTiny + "' '" + kImage + "'");
  REQUIRE(ro.exit_code == 0);
  CHECK(json::parse(ro.out)["tokens"][0]["map"] != j["tokens"][0]["map"]);
  // The default layer is the last one (the tiny decoder has two), not the mean of the layers.
  const auto last = run_cli("attend --threads 1 --json --layer 1 --model '" + kTiny + "' '" + kImage + "'");
  const auto mean = run_cli("attend --threads 1 --json --layer mean --model '" + kTiny + "' '" + kImage + "'");
  REQUIRE(last.exit_code == 0);
  REQUIRE(mean.exit_code == 0);
  CHECK(json::parse(last.out)["tokens"] == j["tokens"]);
  CHECK(json::parse(mean.out)["tokens"][0]["map"] != j["tokens"][0]["map"]);
}

TEST_CASE("attend --json follows the returned beam", "[cli]") {
  const auto c = run_cli("caption --threads 1 --json --beams 3 --model '" + kTinyB + "' '" + kImage + "'");
  const auto a = run_cli("attend --threads 1 --json --beams 3 --model '" + kTinyB + "' '" + kImage + "'");
  INFO(a.err);
  REQUIRE(c.exit_code == 0);
  REQUIRE(a.exit_code == 0);
  const json cj = json::parse(c.out), aj = json::parse(a.out);
  CHECK(aj["caption"] == cj["caption"]);
  REQUIRE(aj["tokens"].size() == cj["token_ids"].size());
  for (std::size_t i = 0; i < aj["tokens"].size(); ++i) CHECK(aj["tokens"][i]["id"] == cj["token_ids"][i]);
}

TEST_CASE("attend writes a panel grid and per-token overlays at the image's resolution", "[cli]") {
  const TempDir tmp("attend");
  const fs::path& dir = tmp.path;
  const auto r = run_cli("attend --threads 1 --max-new-tokens 3 --model '" + kTiny + "' '" + kImage + "' -o " +
                         q(dir / "grid.png") + " --per-token " + q(dir / "tokens"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const cv::Mat grid = cv::imread((dir / "grid.png").string());
  REQUIRE_FALSE(grid.empty());
  // Image + 3 word panels of 320 x 213 in one row.
  CHECK(grid.cols == 4 * 320 + 5 * 8);
  CHECK(grid.rows > 213);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir / "tokens")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() == 3);  // no end-of-text token within 3 new tokens of this caption
  const std::string caption = r.out.substr(0, r.out.find('\n'));
  std::istringstream words(caption);
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::string w;
    words >> w;
    CHECK(files[i].filename().string() == "img_45x30.0" + std::to_string(i) + "." + w + ".png");
    const cv::Mat m = cv::imread(files[i].string());
    CHECK(m.cols == 45);
    CHECK(m.rows == 30);
  }
  CHECK(r.err.find("wrote " + (dir / "grid.png").string()) != std::string::npos);
}

TEST_CASE("attend rejects bad selections and leaves no file when it cannot write", "[cli]") {
  auto r = run_cli("attend --threads 1 --layer 2 --model '" + kTiny + "' '" + kImage + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--layer 2 out of range") != std::string::npos);
  r = run_cli("attend --threads 1 --layer zero --model '" + kTiny + "' '" + kImage + "'");
  CHECK(r.exit_code == 2);
  r = run_cli("attend --threads 1 --rollout --layer 0 --model '" + kTiny + "' '" + kImage + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--rollout") != std::string::npos);
  r = run_cli("attend --threads 1 -o x.png --model '" + kTiny + "' '" + kImage + "' '" + kImage + "'");
  CHECK(r.exit_code == 2);
  r = run_cli("attend --threads 1 --colormap rainbow --model '" + kTiny + "' '" + kImage + "'");
  CHECK(r.exit_code == 5);
  CHECK(r.err.find("rainbow") != std::string::npos);
  const TempDir tmp("attend-fail");
  const fs::path& dir = tmp.path;
  fs::create_directories(dir / "taken.png");  // a folder where the file should go
  r = run_cli("attend --threads 1 --model '" + kTiny + "' '" + kImage + "' -o " + q(dir / "taken.png"));
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("taken.png") != std::string::npos);
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  r = run_cli("attend --threads 1 --model '" + kTiny + "' " + q(dir / "missing.png") + " -o " + q(dir / "out.png"));
  CHECK(r.exit_code == 3);
  CHECK_FALSE(fs::exists(dir / "out.png"));
}

TEST_CASE("video writes SubRip, WebVTT and JSON lines that agree with each other", "[cli]") {
  const TempDir tmp("video");
  const fs::path& dir = tmp.path;
  const auto r = run_cli("video --threads 1 --max-new-tokens 4 --model '" + kTiny + "' '" + kVideo + "' --srt " +
                         q(dir / "a.srt") + " --vtt " + q(dir / "a.vtt") + " --jsonl " + q(dir / "a.jsonl"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());  // files requested: nothing on stdout
  CHECK(r.err.find("80 frames, 8 samples") != std::string::npos);
  const auto cues = parse_srt(read_file(dir / "a.srt"));
  REQUIRE(!cues.empty());
  CHECK(cues.front().start == 0.0);
  CHECK(cues.back().end == Approx(8.0));
  for (std::size_t i = 1; i < cues.size(); ++i) {
    CHECK(cues[i].start == cues[i - 1].end);
    CHECK(cues[i].text != cues[i - 1].text);
  }
  const std::string vtt = read_file(dir / "a.vtt");
  CHECK(vtt.rfind("WEBVTT\n\n", 0) == 0);
  CHECK(blocks(vtt).size() == cues.size() + 1);
  std::ifstream jl(dir / "a.jsonl");
  std::string line;
  std::size_t n = 0;
  std::int64_t samples = 0, last_frame = -1;
  while (std::getline(jl, line)) {
    const json j = json::parse(line);
    REQUIRE(n < cues.size());
    CHECK(j["start"].get<double>() == Approx(cues[n].start));
    CHECK(j["end"].get<double>() == Approx(cues[n].end));
    CHECK(j["caption"] == cues[n].text);
    CHECK(j["frame"].get<std::int64_t>() > last_frame);
    CHECK(j["mean_logprob"].get<double>() < 0);
    last_frame = j["frame"];
    samples += j["samples"].get<std::int64_t>();
    ++n;
  }
  CHECK(n == cues.size());
  CHECK(samples == 8);
  // Without output files the SubRip text goes to stdout.
  const auto s = run_cli("video --threads 1 --max-new-tokens 4 --model '" + kTiny + "' '" + kVideo + "'");
  REQUIRE(s.exit_code == 0);
  CHECK(s.out == read_file(dir / "a.srt"));
}

TEST_CASE("video --annotate writes a playable copy; bad inputs leave no files", "[cli]") {
  const TempDir tmp("video-annotate");
  const fs::path& dir = tmp.path;
  auto r = run_cli("video --threads 1 --max-new-tokens 2 --every 2 --model '" + kTiny + "' '" + kVideo +
                   "' --annotate " + q(dir / "out.mp4") + " --overlay attention --srt " + q(dir / "a.srt"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  cv::VideoCapture cap((dir / "out.mp4").string());
  REQUIRE(cap.isOpened());
  CHECK(cap.get(cv::CAP_PROP_FRAME_COUNT) == 80);
  CHECK(cap.get(cv::CAP_PROP_FRAME_WIDTH) == 256);
  CHECK(cap.get(cv::CAP_PROP_FPS) == Approx(10));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);  // no temporaries

  r = run_cli("video --threads 1 --model '" + kTiny + "' " + q(dir / "missing.mp4") + " --srt " + q(dir / "b.srt"));
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("missing.mp4") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "b.srt"));
  r = run_cli("video --threads 1 --model '" + kTiny + "' '" + kVideo + "' --overlay attention");
  CHECK(r.exit_code == 2);
  r = run_cli("video --threads 1 --model '" + kTiny + "' '" + kVideo + "' --every 0");
  CHECK(r.exit_code == 2);
  r = run_cli("video --threads 1 --model '" + kTiny + "' '" + kVideo + "' --annotate " + q(dir / "c.mp4") +
              " --fourcc ZZZZ --srt " + q(dir / "c.srt"));
  CHECK(r.exit_code == 3);
  CHECK_FALSE(fs::exists(dir / "c.mp4"));
  CHECK_FALSE(fs::exists(dir / "c.srt"));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);
}

namespace {

// Whether `dir` holds the hidden temporary of the annotated video "out.mp4".
bool annotate_temporary_exists(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(".out.mp4.xcaption-tmp-", 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("video: Ctrl-C keeps the segments so far and exits with 130", "[cli]") {
  const TempDir tmp("video-sigint");
  const fs::path& dir = tmp.path;
  // A long, changing video, captioned at every frame with long beam-searched captions, so that the
  // run is far from its end when the signal arrives.
  const fs::path video = dir / "long.avi";
  {
    cv::VideoWriter w(video.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, {64, 48});
    REQUIRE(w.isOpened());
    for (int f = 0; f < 3000; ++f) w.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar((f * 37) % 256, (f * 11) % 256, 90)));
  }
  const fs::path srt = dir / "out.srt", annotated = dir / "out.mp4", err = dir / "stderr";
  const pid_t pid = spawn_cli({"video", "--threads", "1", "--every", "0.1", "--diff-threshold", "0", "--beams", "4",
                               "--min-new-tokens", "60", "--max-new-tokens", "60", "--model", kTiny, video.string(),
                               "--srt", srt.string(), "--annotate", annotated.string()},
                              err);
  // The annotated video's temporary file appears once the first frame is done: the run is in its
  // frame loop (and its SIGINT handler installed).
  auto started = [&] { return annotate_temporary_exists(dir); };
  for (int i = 0; i < 600 && !started(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(started());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::kill(pid, SIGINT);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO(read_file(err));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(read_file(err).find("interrupted") != std::string::npos);
  REQUIRE(fs::exists(srt));
  const auto cues = parse_srt(read_file(srt));
  CHECK(!cues.empty());
  CHECK(cues.back().end < 300.0);  // stopped well before the end of the 300 s video
  // The annotated copy was closed and renamed; no temporary is left.
  CHECK(fs::exists(annotated));
  CHECK_FALSE(started());
  cv::VideoCapture back(annotated.string());
  CHECK(back.isOpened());
}

TEST_CASE("video: a second Ctrl-C (or SIGTERM) quits a stalled stream at once and leaves no partial output",
          "[cli]") {
  const TempDir tmp("video-sigint2");
  const fs::path& dir = tmp.path;
  const fs::path recorded = dir / "rec.avi";
  {
    cv::VideoWriter w(recorded.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, {64, 48});
    REQUIRE(w.isOpened());
    for (int f = 0; f < 600; ++f) w.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar((f * 37) % 256, (f * 11) % 256, 90)));
  }
  const std::string bytes = read_file(recorded);

  // The input is a FIFO that delivers the first 10% of the recording and then stalls, as a network
  // stream can: the frame loop blocks in a read, so the first signal alone cannot end the run.
  const auto run = [&](const std::vector<int>& signals, int expected_status) {
    const fs::path fifo = dir / "in.avi", srt = dir / "out.srt", annotated = dir / "out.mp4", err = dir / "stderr";
    fs::remove(fifo);
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::atomic<bool> release{false};
    std::thread feeder([&] {
      const int fd = ::open(fifo.c_str(), O_WRONLY);
      if (fd < 0) return;
      const std::size_t part = bytes.size() / 10;
      for (std::size_t done = 0; done < part;) {
        const ssize_t n = ::write(fd, bytes.data() + done, part - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::close(fd);
    });
    const pid_t pid = spawn_cli({"video", "--threads", "1", "--model", kTiny, fifo.string(), "--srt", srt.string(),
                                 "--annotate", annotated.string()},
                                err);
    auto temporary_exists = [&] { return annotate_temporary_exists(dir); };
    for (int i = 0; i < 600 && !temporary_exists(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const bool started = temporary_exists();
    // Stalled: everything fed has been decoded once the process stops using CPU time.
    const auto cpu_ticks = [&] {
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      std::istringstream rest(text.substr(text.rfind(')') + 2));
      std::string field;
      long long ticks = 0;
      for (int k = 3; k <= 15 && rest >> field; ++k)
        if (k == 14 || k == 15) ticks += std::stoll(field);  // utime, stime
      return ticks;
    };
    for (int i = 0, still = 0; started && i < 300 && still < 5; ++i) {
      const long long before = cpu_ticks();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      still = cpu_ticks() == before ? still + 1 : 0;
    }
    for (std::size_t k = 0; k < signals.size() && started; ++k) {
      ::kill(pid, signals[k]);
      if (k + 1 < signals.size()) {  // let the first one be handled before the next
        for (int i = 0; i < 400 && read_file(err).find("Ctrl-C again") == std::string::npos; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (!started) ::kill(pid, SIGKILL);
    // It must end by itself, promptly; a run that ignores the signals is killed and fails the test.
    int status = 0;
    bool reaped = false;
    for (int i = 0; i < 1500 && !reaped; ++i) {
      reaped = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    release = true;
    feeder.join();
    const std::string log = read_file(err);
    INFO(log);
    REQUIRE(started);
    REQUIRE(reaped);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == expected_status);
    CHECK(log.find("quit; unfinished outputs removed") != std::string::npos);
    CHECK_FALSE(temporary_exists());     // the annotated video's temporary is gone
    CHECK_FALSE(fs::exists(annotated));  // and nothing half-written took its name
    CHECK_FALSE(fs::exists(srt));
    return log;
  };
  SECTION("Ctrl-C twice") {
    const std::string log = run({SIGINT, SIGINT}, 130);
    CHECK(log.find("Ctrl-C again to quit now") != std::string::npos);
  }
  SECTION("SIGTERM") {
    const std::string log = run({SIGTERM}, 143);
    CHECK(log.find("Ctrl-C again") == std::string::npos);
  }
}
