// CaptionRequest::on_tokens: tokens reported as they become final, and cancelling one image of a
// batch (what the server's streaming and disconnects use).
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>

#include <xcaption/captioner.hpp>
#include <xcaption/image.hpp>

using namespace xcaption;

namespace {
const std::filesystem::path kData = XCAPTION_TEST_DATA;

std::vector<PreparedImage> prepared(const Captioner& c) {
  std::vector<PreparedImage> out;
  for (const char* name : {"img_23x37_rgba.png", "img_45x30.png", "img_64x64.png"})
    out.push_back(c.prepare(load_image(kData / "golden_images" / name)));
  return out;
}
}  // namespace

TEST_CASE("on_tokens reports each greedy token once, in order, and changes nothing", "[stream]") {
  Captioner c = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  const auto images = prepared(c);
  const auto plain = c.caption_prepared(images);
  std::map<std::size_t, std::vector<std::int64_t>> seen;
  std::map<std::size_t, int> calls;
  CaptionRequest r;
  r.on_tokens = [&](std::size_t i, std::span<const std::int64_t> t) {
    ++calls[i];
    CHECK(t.size() <= 1);  // greedy: at most the token just chosen
    seen[i].insert(seen[i].end(), t.begin(), t.end());
    return true;
  };
  const auto streamed = c.caption_prepared(images, r);
  REQUIRE(streamed.size() == images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    CHECK_FALSE(streamed[i].cancelled);
    CHECK(streamed[i].token_ids == plain[i].token_ids);
    CHECK(streamed[i].caption == plain[i].caption);
    CHECK(seen[i] == plain[i].token_ids);
    CHECK(calls[i] == static_cast<int>(plain[i].token_ids.size()));
  }
}

TEST_CASE("on_tokens: beam search reports the returned sequence when it ends", "[stream]") {
  Captioner c = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  const auto images = prepared(c);
  CaptionRequest r;
  r.generation.num_beams = 3;
  const auto plain = c.caption_prepared(images, r);
  std::map<std::size_t, std::vector<std::vector<std::int64_t>>> reports;
  r.on_tokens = [&](std::size_t i, std::span<const std::int64_t> t) {
    reports[i].emplace_back(t.begin(), t.end());
    return true;
  };
  const auto streamed = c.caption_prepared(images, r);
  for (std::size_t i = 0; i < images.size(); ++i) {
    REQUIRE_FALSE(reports[i].empty());
    CHECK(reports[i].back() == plain[i].token_ids);  // the last call brings them all
    for (std::size_t k = 0; k + 1 < reports[i].size(); ++k) CHECK(reports[i][k].empty());
    CHECK(streamed[i].token_ids == plain[i].token_ids);
  }
}

TEST_CASE("on_tokens returning false stops that image only", "[stream]") {
  Captioner c = Captioner::load(kData / "tiny-vit-gpt2", {.threads = 1});
  const auto images = prepared(c);
  CaptionRequest r;
  r.generation.max_new_tokens = 8;
  r.generation.min_new_tokens = 8;  // every caption runs 8 steps, so a stop after 2 tokens is a real cut
  const auto plain = c.caption_prepared(images, r);
  REQUIRE(plain[1].token_ids.size() == 8);
  std::map<std::size_t, int> after_stop;
  bool stopped = false;
  r.on_tokens = [&](std::size_t i, std::span<const std::int64_t>) {
    if (i != 1) return true;
    if (stopped) ++after_stop[i];
    stopped = true;
    return false;  // stop image 1 at its first report
  };
  const auto out = c.caption_prepared(images, r);
  CHECK(after_stop[1] == 0);  // never called again once stopped
  CHECK(out[1].cancelled);
  CHECK(out[1].token_ids.size() == 1);
  CHECK(out[1].token_ids.front() == plain[1].token_ids.front());
  CHECK(out[1].logprobs.empty());
  for (std::size_t i : {std::size_t{0}, std::size_t{2}}) {
    CHECK_FALSE(out[i].cancelled);
    CHECK(out[i].token_ids == plain[i].token_ids);
  }
  // caption() takes the hook too: stop after three tokens.
  CaptionRequest one;
  one.generation.max_new_tokens = 8;
  one.generation.min_new_tokens = 8;
  std::size_t got = 0;
  one.on_tokens = [&](std::size_t, std::span<const std::int64_t> t) {
    got += t.size();
    return got < 3;
  };
  const CaptionResult cut = c.caption(load_image(kData / "golden_images" / "img_45x30.png"), one);
  CHECK(cut.cancelled);
  CHECK(cut.token_ids.size() == 3);
  CHECK(std::vector<std::int64_t>(plain[1].token_ids.begin(), plain[1].token_ids.begin() + 3) == cut.token_ids);
  CHECK(c.prompt_ids(one) == plain[1].prompt_ids);
}
