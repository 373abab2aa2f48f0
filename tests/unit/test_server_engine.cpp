// The server's engine (src/server/engine.hpp) on the tiny checkpoint: batches give the captions
// of single calls, stopped and expired jobs are answered without running, the queue is bounded.
#include <catch2/catch.hpp>

#include <filesystem>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>

#include "src/server/engine.hpp"

using namespace xcaption;
using namespace xcaption::server;

namespace {
const std::filesystem::path kData = XCAPTION_TEST_DATA;
constexpr auto kLater = std::chrono::hours(1);

PreparedImage image(const Captioner& c, const char* name) {
  return c.prepare(load_image(kData / "golden_images" / name));
}
}  // namespace

TEST_CASE("engine: each job gets the caption a single call gives, with its own settings", "[server]") {
  Captioner c = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  const char* names[] = {"img_23x37_rgba.png", "img_45x30.png", "img_64x64.png"};
  CaptionRequest beams;
  beams.generation.num_beams = 2;
  std::vector<std::shared_ptr<Job>> jobs;
  std::vector<CaptionResult> want;
  for (int round = 0; round < 2; ++round)
    for (const char* n : names) want.push_back(c.caption(load_image(kData / "golden_images" / n), round == 0 ? CaptionRequest{} : beams));
  {
    Engine engine(c, 16, 8);  // from here on only the engine's thread runs the captioner
    for (int round = 0; round < 2; ++round)
      for (const char* n : names) {
        jobs.push_back(std::make_shared<Job>(image(c, n), round == 0 ? CaptionRequest{} : beams, Clock::now() + kLater));
        REQUIRE(engine.submit(jobs.back()));
      }
    for (auto& j : jobs) REQUIRE(j->wait_until(Clock::now() + std::chrono::seconds(60)));
    const EngineStats s = engine.stats();
    CHECK(s.images == 6);
    CHECK(s.batches >= 2);  // two settings never share a batch
    CHECK(s.batches <= 6);
    std::int64_t tokens = 0;
    for (const auto& w : want) tokens += static_cast<std::int64_t>(w.token_ids.size());
    CHECK(s.tokens == tokens);
  }
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    REQUIRE(jobs[i]->result());
    CHECK(jobs[i]->error().empty());
    CHECK(jobs[i]->result()->token_ids == want[i].token_ids);
    CHECK(jobs[i]->result()->caption == want[i].caption);
    // wait_tokens hands over every token once, then reports the end.
    std::vector<std::int64_t> streamed;
    CHECK(jobs[i]->wait_tokens(Clock::now(), streamed));
    CHECK(streamed == want[i].token_ids);
  }
}

TEST_CASE("engine: stopped and expired jobs are not run; a full queue refuses; bad settings fail the job", "[server]") {
  Captioner c = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  Engine engine(c, 4, 8);
  auto stopped = std::make_shared<Job>(image(c, "img_45x30.png"), CaptionRequest{}, Clock::now() + kLater);
  stopped->cancel();
  auto expired = std::make_shared<Job>(image(c, "img_45x30.png"), CaptionRequest{}, Clock::now() - std::chrono::seconds(1));
  CaptionRequest bad;
  bad.generation.num_beams = 1000;  // more beams than the tiny vocabulary has tokens
  auto failing = std::make_shared<Job>(image(c, "img_45x30.png"), bad, Clock::now() + kLater);
  REQUIRE(engine.submit(stopped));
  REQUIRE(engine.submit(expired));
  REQUIRE(engine.submit(failing));
  for (auto* j : {&stopped, &expired, &failing}) REQUIRE((*j)->wait_until(Clock::now() + std::chrono::seconds(60)));
  CHECK(stopped->result()->cancelled);
  CHECK(stopped->result()->token_ids.empty());
  CHECK(expired->result()->cancelled);
  CHECK(failing->error_status() == 400);
  CHECK(failing->error().find("num_beams") != std::string::npos);
  CHECK(engine.stats().cancelled == 2);

  Engine closed(c, 0, 8);  // no room at all
  CHECK_FALSE(closed.submit(std::make_shared<Job>(image(c, "img_45x30.png"), CaptionRequest{}, Clock::now() + kLater)));
}
