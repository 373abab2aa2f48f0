// Generation bookkeeping: logits processors, beam hypotheses, greedy/beam loops on a scripted model.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "src/generate/generate.hpp"
#include "src/generate/settings.hpp"

using namespace xcaption;

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();

// The rows of one scripted sequence group: each row's history (after the prompt), reordered
// like a real cache would be.
class ScriptedState : public DecoderState {
 public:
  explicit ScriptedState(std::int64_t rows, std::int64_t prompt = 1)
      : histories(static_cast<std::size_t>(rows)), prompt_left(prompt) {}
  std::int64_t rows() const override { return static_cast<std::int64_t>(histories.size()); }
  void reorder(const std::int64_t* src) override {
    auto old = histories;
    for (std::size_t r = 0; r < histories.size(); ++r) histories[r] = old[static_cast<std::size_t>(src[r])];
  }
  std::vector<std::vector<std::int64_t>> histories;
  std::int64_t prompt_left;  // prompt tokens still to be fed (not part of the histories)
  std::vector<std::int64_t> fed;  // every token fed to row 0, prompt included
};

// A model whose logits depend only on the sequence after the prompt: a table from history to
// logits, with a default row for unknown histories.
class ScriptedModel : public StepModel {
 public:
  explicit ScriptedModel(std::int64_t vocab) : vocab_(vocab) {}
  std::map<std::vector<std::int64_t>, std::vector<float>> table;  // history (after prompt) -> logits
  std::vector<float> fallback;
  std::int64_t steps = 0;

  std::int64_t vocab_size() const override { return vocab_; }
  std::int64_t attention_floats() const override { return 1; }
  void step(std::span<DecoderState* const> groups, const std::int64_t* tokens, float* logits,
            float* attention) override {
    ++steps;
    std::int64_t row = 0;
    for (DecoderState* g : groups) {
      auto& st = *static_cast<ScriptedState*>(g);
      st.fed.push_back(tokens[row]);
      const bool in_prompt = st.prompt_left > 0;
      if (in_prompt) --st.prompt_left;
      for (std::size_t r = 0; r < st.histories.size(); ++r, ++row) {
        if (!in_prompt) st.histories[r].push_back(tokens[row]);
        const auto& h = st.histories[r];
        auto it = table.find(h);
        const auto& values = it == table.end() ? fallback : it->second;
        std::copy(values.begin(), values.end(), logits + row * vocab_);
        // "attention" = the length of the history this row saw, to check it is tracked per beam.
        if (attention) attention[row] = static_cast<float>(h.size() * 10 + (h.empty() ? 0 : h.back()));
      }
    }
  }

 private:
  std::int64_t vocab_;
};

DecodeResult decode(ScriptedModel& m, const DecodeSettings& s, bool capture) {
  ScriptedState state(s.num_beams, static_cast<std::int64_t>(s.prompt.size()));
  return xcaption::decode(m, state, s, capture);
}

DecodeSettings settings(std::int64_t beams, std::int64_t max_length) {
  DecodeSettings s;
  s.num_beams = beams;
  s.max_length = max_length;
  s.eos_token_ids = {0};
  s.prompt = {1};
  return s;
}
}  // namespace

TEST_CASE("repetition penalty divides positive and multiplies negative scores once per token", "[generate]") {
  std::vector<float> s{2.0f, -2.0f, 3.0f, 4.0f};
  const std::vector<std::int64_t> history{0, 1, 1, 1};
  apply_repetition_penalty(s, history, 2.0f);
  CHECK(s[0] == 1.0f);
  CHECK(s[1] == -4.0f);  // penalised once although it occurs three times
  CHECK(s[2] == 3.0f);
  CHECK(s[3] == 4.0f);
}

TEST_CASE("no-repeat n-gram bans the tokens that would complete a seen n-gram", "[generate]") {
  std::vector<float> s(6, 0.0f);
  // history 1 2 3 1 2 : bigram prefix (2) was followed by 3 -> ban 3 for n=2;
  // trigram prefix (1 2) was followed by 3 -> ban 3 for n=3.
  const std::vector<std::int64_t> history{1, 2, 3, 1, 2};
  apply_no_repeat_ngram(s, history, 2);
  CHECK(s[3] == -kInf);
  CHECK(s[1] == 0.0f);
  std::vector<float> s3(6, 0.0f);
  apply_no_repeat_ngram(s3, history, 3);
  CHECK(s3[3] == -kInf);
  std::vector<float> s1(6, 0.0f);  // n=1 bans every token seen, start token included
  apply_no_repeat_ngram(s1, history, 1);
  CHECK(s1[1] == -kInf);
  CHECK(s1[2] == -kInf);
  CHECK(s1[4] == 0.0f);
  std::vector<float> short_history(6, 0.0f);  // too short for a 4-gram: nothing banned
  apply_no_repeat_ngram(short_history, std::vector<std::int64_t>{1, 2}, 4);
  for (float v : short_history) CHECK(v == 0.0f);
}

TEST_CASE("min length suppresses every eos id until reached (start token counts)", "[generate]") {
  std::vector<float> s{1.0f, 1.0f, 1.0f};
  const std::vector<std::int64_t> eos{0, 2};
  apply_min_length(s, 2, 3, eos);
  CHECK(s[0] == -kInf);
  CHECK(s[2] == -kInf);
  CHECK(s[1] == 1.0f);
  std::vector<float> t{1.0f, 1.0f, 1.0f};
  apply_min_length(t, 3, 3, eos);
  CHECK(t[0] == 1.0f);
}

TEST_CASE("a forced token leaves only that token, and only at its length", "[generate]") {
  std::vector<float> s{1.0f, 5.0f, -2.0f, 3.0f};
  apply_forced_token(s, 2, 1, 3);  // history length 2, forced at 1: untouched
  CHECK(s == std::vector<float>{1.0f, 5.0f, -2.0f, 3.0f});
  apply_forced_token(s, 1, 1, 2);
  CHECK(s == std::vector<float>{-kInf, -kInf, 0.0f, -kInf});
}

TEST_CASE("forced BOS picks the first token and forced EOS the last, greedy and beams", "[generate]") {
  ScriptedModel m(6);
  m.fallback = {-9.0f, 0.0f, -1.0f, -2.0f, 4.0f, -3.0f};  // 4 always wins, eos 0 never
  for (std::int64_t beams : {1, 3}) {
    auto s = settings(beams, 6);
    s.prompt = {2};
    s.no_repeat_ngram_size = 0;
    s.forced_bos_token_id = 5;
    s.forced_eos_token_id = 0;
    DecodeResult r = decode(m, s, false);
    INFO("beams " << beams);
    // 5 forced first, then the model's own choice, eos forced at max_length - 1 (6 tokens in all).
    REQUIRE(r.tokens.size() == 5);
    CHECK(r.tokens.front() == 5);
    CHECK(r.tokens[1] == 4);
    CHECK(r.tokens.back() == 0);
    // The recorded log-probabilities stay those of the raw logits.
    CHECK(r.logprobs.front() < -5.0f);
  }
  // Without them, the same model never says 5 and runs to max_length without eos.
  DecodeResult plain = decode(m, settings(1, 6), false);
  CHECK(plain.tokens == std::vector<std::int64_t>{4, 4, 4, 4, 4});
}

TEST_CASE("beam hypotheses keep the best num_beams and track the worst score", "[generate][beam]") {
  BeamHypotheses h(2, 1.0, DecodeSettings::EarlyStopping::False, 20);
  h.add({0, {5, 0}, {}, {}}, -4.0, 2);  // score -2
  CHECK(h.worst_score() == Approx(-2.0));
  h.add({0, {6, 0}, {}, {}}, -3.0, 3);  // score -1
  CHECK(h.size() == 2);
  CHECK(h.worst_score() == Approx(-2.0));
  h.add({0, {7, 0}, {}, {}}, -9.0, 3);  // score -3: worse than the worst, rejected
  CHECK(h.size() == 2);
  h.add({0, {8, 0}, {}, {}}, -1.0, 2);  // score -0.5: evicts -2
  CHECK(h.size() == 2);
  CHECK(h.worst_score() == Approx(-1.0));
  CHECK(h.best().tokens == std::vector<std::int64_t>{8, 0});
  // early_stopping=false: done when no running beam can beat the worst kept score.
  CHECK(h.is_done(-3.0, 4));    // best running -3/3 = -1 -> worst -1 >= -1
  CHECK_FALSE(h.is_done(-2.0, 4));  // -2/3 = -0.67 > -1
}

TEST_CASE("length penalty 0 ranks by raw sum, 2 favours long hypotheses", "[generate][beam]") {
  BeamHypotheses raw(1, 0.0, DecodeSettings::EarlyStopping::True, 20);
  raw.add({0, {1}, {}, {}}, -2.0, 1);
  raw.add({0, {1, 2, 3, 4}, {}, {}}, -3.0, 4);
  CHECK(raw.best().tokens.size() == 1);
  BeamHypotheses longer(1, 2.0, DecodeSettings::EarlyStopping::True, 20);
  longer.add({0, {1}, {}, {}}, -2.0, 1);          // -2
  longer.add({0, {1, 2, 3, 4}, {}, {}}, -3.0, 4);  // -3/16
  CHECK(longer.best().tokens.size() == 4);
  CHECK(longer.is_done(-100.0, 5));  // early_stopping=true: done as soon as num_beams are kept
}

TEST_CASE("greedy picks the processed argmax and reports raw log-probs", "[generate]") {
  ScriptedModel m(4);
  m.fallback = {0.0f, 0.0f, 0.0f, 0.0f};
  m.table[{}] = {0.0f, 0.0f, 2.0f, 1.0f};
  m.table[{2}] = {0.0f, 0.0f, 3.0f, 2.9f};
  m.table[{2, 3}] = {5.0f, 0.0f, 0.0f, 0.0f};
  auto s = settings(1, 10);
  s.repetition_penalty = 2.0f;  // 3.0 for token 2 (already generated) becomes 1.5 < 2.9
  DecodeResult r = decode(m, s, true);
  REQUIRE(r.tokens == std::vector<std::int64_t>{2, 3, 0});
  const double lse0 = std::log(std::exp(0.0) * 2 + std::exp(2.0) + std::exp(1.0));
  CHECK(r.logprobs[0] == Approx(2.0 - lse0).epsilon(1e-6));
  const double lse1 = std::log(2 + std::exp(3.0) + std::exp(2.9));
  CHECK(r.logprobs[1] == Approx(2.9 - lse1).epsilon(1e-6));  // raw logits, not the penalised ones
  CHECK(r.sequence_score == Approx(r.logprobs[0] + r.logprobs[1] + r.logprobs[2]).epsilon(1e-6));
  REQUIRE(r.attention.size() == 3);
  CHECK(r.attention[1] == 12.0f);  // the step that produced token 3 saw history {2}
}

TEST_CASE("greedy stops at max_length counting the start token", "[generate]") {
  ScriptedModel m(3);
  m.fallback = {0.0f, 0.0f, 1.0f};  // never eos
  DecodeResult r = decode(m, settings(1, 5), false);
  CHECK(r.tokens.size() == 4);
}

TEST_CASE("beam search follows the better continuation that greedy misses", "[generate][beam]") {
  // Greedy takes 2 (p=0.5) then a flat distribution; beam finds 3 (p=0.4) then a sure eos.
  ScriptedModel m(5);
  m.fallback = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  m.table[{}] = {-20.0f, -20.0f, std::log(0.5f), std::log(0.4f), std::log(0.1f)};
  m.table[{2}] = {std::log(0.25f), -20.0f, std::log(0.25f), std::log(0.25f), std::log(0.25f)};
  m.table[{3}] = {std::log(0.97f), -20.0f, std::log(0.01f), std::log(0.01f), std::log(0.01f)};
  auto s = settings(2, 6);
  s.length_penalty = 0.0;
  s.early_stopping = DecodeSettings::EarlyStopping::True;
  DecodeResult beam = decode(m, s, true);
  REQUIRE(beam.tokens == std::vector<std::int64_t>{3, 0});
  CHECK(beam.sequence_score == Approx(std::log(0.4) + std::log(0.97)).epsilon(1e-4));
  REQUIRE(beam.logprobs.size() == 2);
  CHECK(beam.logprobs[0] == Approx(std::log(0.4)).epsilon(1e-4));
  // Attention of the returned beam: step 2 saw history {3}, tracked through reordering.
  REQUIRE(beam.attention.size() == 2);
  CHECK(beam.attention[0] == 0.0f);
  CHECK(beam.attention[1] == 13.0f);
  ScriptedModel g = m;
  DecodeResult greedy = decode(g, settings(1, 6), false);
  CHECK(greedy.tokens.front() == 2);
}

TEST_CASE("an eos ranked below num_beams does not finish a hypothesis", "[generate][beam]") {
  ScriptedModel m(4);
  // Step 1: tokens 2 and 3 beat eos, eos is third (rank 2 >= num_beams 2): not a hypothesis.
  m.fallback = {-30.0f, -30.0f, -30.0f, -30.0f};
  m.table[{}] = {std::log(0.2f), -30.0f, std::log(0.45f), std::log(0.35f)};
  m.table[{2}] = {0.0f, -30.0f, -30.0f, -30.0f};
  m.table[{3}] = {0.0f, -30.0f, -30.0f, -30.0f};
  auto s = settings(2, 4);
  s.length_penalty = 1.0;
  DecodeResult r = decode(m, s, false);
  REQUIRE(r.tokens.size() == 2);
  CHECK(r.tokens[0] == 2);
  CHECK(r.tokens[1] == 0);
  // score = (log .45 + 0) / 2 generated tokens
  CHECK(r.sequence_score == Approx(std::log(0.45) / 2.0).epsilon(1e-4));
}

TEST_CASE("beam search at max length returns running beams without eos", "[generate][beam]") {
  ScriptedModel m(4);
  m.fallback = {-50.0f, -50.0f, 0.0f, -1.0f};
  auto s = settings(2, 4);
  DecodeResult r = decode(m, s, false);
  CHECK(r.tokens.size() == 3);
  CHECK(std::find(r.tokens.begin(), r.tokens.end(), 0) == r.tokens.end());
}

TEST_CASE("settings follow HF length rules", "[generate][settings]") {
  GenerationConfig g;
  g.decoder_start_token_id = 5;
  g.eos_token_id = {7};
  GenerationOptions o;
  CHECK(resolve_settings(g, o).max_length == 21);  // untouched 20 -> 20 new tokens
  g.max_length = 16;
  CHECK(resolve_settings(g, o).max_length == 16);  // an explicit 16 counts the start token
  o.max_new_tokens = 4;
  CHECK(resolve_settings(g, o).max_length == 5);
  o = {};
  o.max_length = 9;
  CHECK(resolve_settings(g, o).max_length == 9);
  g.max_new_tokens = 3;  // max_new_tokens wins wherever it comes from
  CHECK(resolve_settings(g, o).max_length == 4);
  g.min_length = 4;
  CHECK(resolve_settings(g, {}).min_length == 4);
  GenerationOptions mn;
  mn.min_new_tokens = 2;
  CHECK(resolve_settings(g, mn).min_length == 3);
  GenerationOptions bad;
  bad.early_stopping = "sometimes";
  CHECK_THROWS_WITH(resolve_settings(g, bad), Catch::Contains("early_stopping"));
  g.decoder_start_token_id.reset();
  g.bos_token_id = 9;
  CHECK(resolve_settings(g, {}).prompt == std::vector<std::int64_t>{9});  // falls back to bos
  g.bos_token_id.reset();
  CHECK_THROWS_WITH(resolve_settings(g, {}), Catch::Contains("decoder_start_token_id"));
}

TEST_CASE("a multi-token prompt is fed first; processors and lengths count it", "[generate]") {
  ScriptedModel m(8);
  m.fallback = {-5.0f, -5.0f, -5.0f, -5.0f, -5.0f, 3.0f, 2.0f, 1.0f};  // 5 > 6 > 7, eos 0 unlikely
  auto s = settings(1, 6);
  s.prompt = {1, 5, 6};  // start token, then two prompt tokens
  DecodeResult plain = decode(m, s, false);
  // max_length 6 counts the 3 prompt tokens: 3 generated.
  REQUIRE(plain.tokens.size() == 3);
  CHECK(plain.tokens[0] == 5);
  s.repetition_penalty = 4.0f;  // 5 and 6 were in the prompt: 3/4 and 2/4 lose to 1
  DecodeResult penalised = decode(m, s, false);
  CHECK(penalised.tokens[0] == 7);
  s.repetition_penalty = 1.0f;
  s.no_repeat_ngram_size = 2;  // the bigram (5, 6) of the prompt bans 6 after a 5
  m.fallback = {-5.0f, -5.0f, -5.0f, -5.0f, -5.0f, 1.0f, 3.0f, 2.0f};
  s.prompt = {1, 5};
  s.max_length = 3;
  DecodeResult ngram = decode(m, s, false);
  CHECK(ngram.tokens == std::vector<std::int64_t>{6});  // (1,5) then 6: not seen before
  s.prompt = {5, 6, 5};
  s.max_length = 4;
  ngram = decode(m, s, false);
  CHECK(ngram.tokens == std::vector<std::int64_t>{7});  // 6 after 5 would repeat (5, 6)

  // The beam score divides by the generated length only (prompt excluded).
  ScriptedModel b(4);
  b.fallback = {-30.0f, -30.0f, -30.0f, -30.0f};
  b.table[{}] = {std::log(0.2f), -30.0f, std::log(0.45f), std::log(0.35f)};
  b.table[{2}] = {0.0f, -30.0f, -30.0f, -30.0f};
  b.table[{3}] = {0.0f, -30.0f, -30.0f, -30.0f};
  auto bs = settings(2, 6);
  bs.prompt = {1, 3, 3};
  DecodeResult beam = decode(b, bs, false);
  REQUIRE(beam.tokens == std::vector<std::int64_t>{2, 0});
  CHECK(beam.sequence_score == Approx(std::log(0.45) / 2.0).epsilon(1e-4));

  auto bad = settings(1, 3);
  bad.prompt = {1, 2, 3};  // no room left
  CHECK_THROWS_WITH(decode(m, bad, false), Catch::Contains("no room"));
  bad.max_length = 5;
  bad.prompt = {1, 9};  // outside the vocabulary of 8
  CHECK_THROWS_WITH(decode(m, bad, false), Catch::Contains("outside the vocabulary"));
}

TEST_CASE("groups decoded together give each group's own result", "[generate]") {
  ScriptedModel m(5);
  m.fallback = {std::log(0.1f), -20.0f, std::log(0.5f), std::log(0.3f), std::log(0.1f)};
  m.table[{2}] = {std::log(0.6f), -20.0f, std::log(0.1f), std::log(0.2f), std::log(0.1f)};
  m.table[{3}] = {std::log(0.9f), -20.0f, std::log(0.05f), std::log(0.03f), std::log(0.02f)};
  auto greedy = settings(1, 8);
  auto beam = settings(3, 8);
  beam.length_penalty = 0.0;
  auto prompted = settings(2, 9);
  prompted.prompt = {1, 4, 4};
  const DecodeSettings* all[] = {&greedy, &beam, &prompted};
  std::vector<DecodeResult> alone;
  for (const auto* s : all) alone.push_back(decode(m, *s, true));
  ScriptedState s1(1), s2(3), s3(2, 3);
  const DecodeJob jobs[] = {{&s1, &greedy, true}, {&s2, &beam, true}, {&s3, &prompted, true}};
  const auto together = decode_together(m, jobs);
  REQUIRE(together.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("group " << i);
    CHECK(together[i].tokens == alone[i].tokens);
    CHECK(together[i].sequence_score == Approx(alone[i].sequence_score));
    CHECK(together[i].attention == alone[i].attention);
  }
  ScriptedState wrong(2);
  const DecodeJob mismatch[] = {{&wrong, &greedy, false}};
  CHECK_THROWS_WITH(decode_together(m, mismatch), Catch::Contains("rows"));
}

TEST_CASE("a group that joins a running batch, and one removed from it", "[generate]") {
  ScriptedModel m(5);
  m.fallback = {std::log(0.1f), -20.0f, std::log(0.5f), std::log(0.3f), std::log(0.1f)};
  m.table[{2, 2, 2}] = {std::log(0.9f), -20.0f, std::log(0.05f), std::log(0.03f), std::log(0.02f)};
  const auto greedy = settings(1, 8);
  auto beam = settings(2, 7);
  beam.length_penalty = 0.5;
  const DecodeResult alone_greedy = decode(m, greedy, false), alone_beam = decode(m, beam, false);
  ScriptedState first(1), late(2), dropped(1);
  DecodeBatch batch(m);
  const auto a = batch.add({&first, &greedy, false});
  const auto c = batch.add({&dropped, &greedy, false});
  batch.step();
  batch.step();
  CHECK(batch.committed(a).size() == 2);  // greedy tokens are final as they come: one per step
  const auto b = batch.add({&late, &beam, false});
  CHECK(batch.rows() == 4);
  batch.remove(c);
  CHECK(batch.groups() == 2);
  std::map<std::int64_t, DecodeResult> done;
  while (!batch.empty()) {
    batch.step();
    for (auto& [id, r] : batch.take_finished()) done[id] = std::move(r);
  }
  REQUIRE(done.size() == 2);
  CHECK(done.count(c) == 0);
  CHECK(done[a].tokens == alone_greedy.tokens);
  CHECK(done[b].tokens == alone_beam.tokens);
  CHECK(done[b].sequence_score == Approx(alone_beam.sequence_score));
}
