#include "src/generate/generate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

#include "src/tensor/tensor.hpp"

namespace xcaption {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool is_eos(std::int64_t token, std::span<const std::int64_t> eos) {
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

// log(sum(exp(row))) in float32 arithmetic on a float64 accumulator, as a stable log-softmax.
float log_sum_exp(const float* row, std::int64_t n) {
  float mx = row[0];
  for (std::int64_t i = 1; i < n; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
  return mx + static_cast<float>(std::log(sum));
}

bool has_processors(const DecodeSettings& s) {
  return s.repetition_penalty != 1.0f || s.no_repeat_ngram_size > 0 || s.min_length > 0;
}

// The `keep` best of scores[0, n) into order[0, keep), best first; equal scores keep the lower
// index first (the order of a stable sort by descending score). One pass that only touches its
// small sorted buffer when a value beats the current worst of it.
void top_k(const float* scores, std::int64_t n, std::int64_t keep, std::int64_t* order) {
  std::int64_t found = 0;
  float worst = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = scores[i];
    if (found == keep && !(v > worst)) continue;
    std::int64_t pos = found < keep ? found++ : keep - 1;
    while (pos > 0 && scores[order[pos - 1]] < v) {
      order[pos] = order[pos - 1];
      --pos;
    }
    order[pos] = i;
    worst = scores[order[found - 1]];
  }
}

void apply_processors(std::span<float> scores, std::span<const std::int64_t> history,
                      const DecodeSettings& s) {
  if (s.repetition_penalty != 1.0f) apply_repetition_penalty(scores, history, s.repetition_penalty);
  if (s.no_repeat_ngram_size > 0) apply_no_repeat_ngram(scores, history, s.no_repeat_ngram_size);
  if (s.min_length > 0)
    apply_min_length(scores, static_cast<std::int64_t>(history.size()), s.min_length, s.eos_token_ids);
}
}  // namespace

void apply_repetition_penalty(std::span<float> scores, std::span<const std::int64_t> history,
                              float penalty) {
  // ref: RepetitionPenaltyLogitsProcessor: gather every previous token's score, then divide
  // positive scores and multiply negative ones; repeated tokens are penalised once.
  for (std::size_t i = 0; i < history.size(); ++i) {
    const std::int64_t t = history[i];
    if (std::find(history.begin(), history.begin() + static_cast<std::ptrdiff_t>(i), t) !=
        history.begin() + static_cast<std::ptrdiff_t>(i))
      continue;
    float& v = scores[static_cast<std::size_t>(t)];
    v = v < 0 ? v * penalty : v / penalty;
  }
}

void apply_no_repeat_ngram(std::span<float> scores, std::span<const std::int64_t> history,
                           std::int64_t n) {
  // ref: NoRepeatNGramLogitsProcessor: ban every token that would complete an n-gram already
  // present in the history (start token included).
  const auto cur_len = static_cast<std::int64_t>(history.size());
  if (cur_len + 1 < n) return;
  const std::int64_t start = cur_len + 1 - n;  // the last n-1 tokens form the prefix
  for (std::int64_t i = 0; i + n <= cur_len; ++i) {
    bool match = true;
    for (std::int64_t j = 0; j < n - 1 && match; ++j) match = history[i + j] == history[start + j];
    if (match) scores[static_cast<std::size_t>(history[i + n - 1])] = kNegInf;
  }
}

void apply_min_length(std::span<float> scores, std::int64_t cur_len, std::int64_t min_length,
                      std::span<const std::int64_t> eos_token_ids) {
  if (cur_len >= min_length) return;
  for (std::int64_t e : eos_token_ids)
    if (e >= 0 && e < static_cast<std::int64_t>(scores.size())) scores[static_cast<std::size_t>(e)] = kNegInf;
}

BeamHypotheses::BeamHypotheses(std::int64_t num_beams, double length_penalty,
                               DecodeSettings::EarlyStopping early_stopping,
                               std::int64_t max_length)
    : num_beams_(num_beams), length_penalty_(length_penalty), early_stopping_(early_stopping),
      max_length_(max_length) {}

void BeamHypotheses::add(Hypothesis hyp, double sum_logprobs, std::int64_t generated_len) {
  const double score = sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
  if (static_cast<std::int64_t>(beams_.size()) < num_beams_ || score > worst_score_) {
    hyp.score = score;
    beams_.push_back(std::move(hyp));
    if (static_cast<std::int64_t>(beams_.size()) > num_beams_) {
      // Drop the worst (lowest score, earliest on ties); the next worst becomes the bar.
      std::vector<std::size_t> order(beams_.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return beams_[a].score < beams_[b].score; });
      worst_score_ = beams_[order[1]].score;
      beams_.erase(beams_.begin() + static_cast<std::ptrdiff_t>(order[0]));
    } else {
      worst_score_ = std::min(score, worst_score_);
    }
  }
}

bool BeamHypotheses::is_done(double best_sum_logprobs, std::int64_t cur_len) const {
  if (static_cast<std::int64_t>(beams_.size()) < num_beams_) return false;
  using ES = DecodeSettings::EarlyStopping;
  if (early_stopping_ == ES::True) return true;
  // The decoder prompt is the start token alone, so generated length = cur_len - 1.
  std::int64_t len = cur_len - 1;
  if (early_stopping_ == ES::Never && length_penalty_ > 0) len = max_length_ - 1;
  const double highest = best_sum_logprobs / std::pow(static_cast<double>(len), length_penalty_);
  return worst_score_ >= highest;
}

const BeamHypotheses::Hypothesis& BeamHypotheses::best() const {
  if (beams_.empty()) throw InputError("beam search finished without any hypothesis");
  std::size_t best = 0;
  for (std::size_t i = 1; i < beams_.size(); ++i)
    if (beams_[i].score >= beams_[best].score) best = i;
  return beams_[best];
}

namespace {

DecodeResult greedy(StepModel& model, const DecodeSettings& s, bool capture) {
  const std::int64_t vocab = model.vocab_size();
  const std::int64_t att = capture ? model.attention_floats() : 0;
  DecodeResult out;
  std::vector<std::int64_t> history{s.decoder_start_token_id};
  history.reserve(static_cast<std::size_t>(s.max_length));
  FloatBuffer logits(static_cast<std::size_t>(vocab)), processed(static_cast<std::size_t>(vocab));
  FloatBuffer logprobs(static_cast<std::size_t>(vocab));
  FloatBuffer attention(static_cast<std::size_t>(std::max<std::int64_t>(att, 1)));
  out.tokens.reserve(static_cast<std::size_t>(s.max_length));
  out.logprobs.reserve(static_cast<std::size_t>(s.max_length));
  if (capture) out.attention.reserve(static_cast<std::size_t>(att * s.max_length));

  model.begin(1);
  while (static_cast<std::int64_t>(history.size()) < s.max_length) {
    model.step(&history.back(), logits.data(), capture ? attention.data() : nullptr);
    std::copy(logits.data(), logits.data() + vocab, processed.data());
    apply_processors({processed.data(), static_cast<std::size_t>(vocab)}, history, s);
    // argmax, first index on ties (torch.argmax)
    std::int64_t best = 0;
    for (std::int64_t i = 1; i < vocab; ++i)
      if (processed.data()[i] > processed.data()[best]) best = i;
    model.log_softmax(logits.data(), 1, logprobs.data());
    const float logprob = logprobs.data()[best];
    history.push_back(best);
    out.tokens.push_back(best);
    out.logprobs.push_back(logprob);
    out.sequence_score += logprob;
    if (capture) out.attention.insert(out.attention.end(), attention.data(), attention.data() + att);
    if (is_eos(best, s.eos_token_ids)) break;
  }
  return out;
}

DecodeResult beam_search(StepModel& model, const DecodeSettings& s, bool capture) {
  const std::int64_t k = s.num_beams, vocab = model.vocab_size();
  const std::int64_t att = capture ? model.attention_floats() : 0;
  const std::int64_t keep = std::max<std::int64_t>(2, 1 + static_cast<std::int64_t>(s.eos_token_ids.size())) * k;

  struct Beam {
    std::vector<std::int64_t> history;  // start token first
    std::vector<float> logprobs;
    std::vector<float> attention;
  };
  std::vector<Beam> beams(static_cast<std::size_t>(k)), next(static_cast<std::size_t>(k));
  for (auto* set : {&beams, &next})
    for (auto& b : *set) {
      b.history.reserve(static_cast<std::size_t>(s.max_length));
      b.logprobs.reserve(static_cast<std::size_t>(s.max_length));
      if (capture) b.attention.reserve(static_cast<std::size_t>(att * s.max_length));
    }
  for (auto& b : beams) b.history.push_back(s.decoder_start_token_id);
  // ref: all beams start identical; only the first may expand at step one.
  std::vector<float> beam_scores(static_cast<std::size_t>(k), -1e9f);
  beam_scores[0] = 0.0f;

  FloatBuffer logits(static_cast<std::size_t>(k * vocab)), scores(static_cast<std::size_t>(k * vocab));
  FloatBuffer logprobs(static_cast<std::size_t>(k * vocab));  // raw log_softmax of the logits
  FloatBuffer attention(static_cast<std::size_t>(std::max<std::int64_t>(k * att, 1)));
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(k)), src(static_cast<std::size_t>(k));
  std::vector<std::int64_t> order(static_cast<std::size_t>(keep));
  const bool processing = has_processors(s);
  std::vector<float> next_scores(static_cast<std::size_t>(k));
  BeamHypotheses hyps(k, s.length_penalty, s.early_stopping, s.max_length);

  model.begin(k);
  std::int64_t cur_len = 1;
  while (true) {
    for (std::int64_t b = 0; b < k; ++b) tokens[b] = beams[b].history.back();
    model.step(tokens.data(), logits.data(), capture ? attention.data() : nullptr);

    model.log_softmax(logits.data(), k, logprobs.data());
    for (std::int64_t b = 0; b < k; ++b) {
      const float* lp = logprobs.data() + b * vocab;
      float* sc = scores.data() + b * vocab;
      const float running = beam_scores[b];
      if (processing) {
        std::copy(lp, lp + vocab, sc);
        apply_processors({sc, static_cast<std::size_t>(vocab)}, beams[b].history, s);
        for (std::int64_t i = 0; i < vocab; ++i) sc[i] += running;
      } else {
        for (std::int64_t i = 0; i < vocab; ++i) sc[i] = lp[i] + running;
      }
    }
    // top `keep` over beams x vocab, sorted by score (ties: lower flat index first).
    const float* sc = scores.data();
    top_k(sc, k * vocab, keep, order.data());

    const std::int64_t next_len = cur_len + 1;  // sequence length once this step's token is added
    const bool last = next_len >= s.max_length;   // every candidate stops here
    // ref: transformers >= 4.50 _beam_search: candidates that stop (eos, or the length limit)
    // become finished hypotheses when ranked among the first K; the next running beams are the
    // best K that did not stop (stopped ones, at -1e9, only fill slots nothing else can).
    std::int64_t filled = 0;
    auto take = [&](std::int64_t rank, float score) {
      const std::int64_t flat = order[rank], from = flat / vocab, token = flat % vocab;
      Beam& nb = next[filled];
      const Beam& ob = beams[from];
      nb.history.assign(ob.history.begin(), ob.history.end());
      nb.history.push_back(token);
      nb.logprobs.assign(ob.logprobs.begin(), ob.logprobs.end());
      nb.logprobs.push_back(logprobs.data()[flat]);
      if (capture) {
        nb.attention.assign(ob.attention.begin(), ob.attention.end());
        nb.attention.insert(nb.attention.end(), attention.data() + from * att, attention.data() + (from + 1) * att);
      }
      next_scores[filled] = score;
      src[filled] = from;
      ++filled;
    };
    bool any_running = false;
    for (std::int64_t rank = 0; rank < keep; ++rank) {
      const std::int64_t flat = order[rank], from = flat / vocab, token = flat % vocab;
      const bool stops = last || is_eos(token, s.eos_token_ids);
      if (!stops) {
        any_running = true;
        if (filled < k) take(rank, sc[flat]);
        continue;
      }
      if (rank >= k) continue;  // a stop outside the top num_beams does not finish a beam
      BeamHypotheses::Hypothesis h;
      h.tokens.assign(beams[from].history.begin() + 1, beams[from].history.end());
      h.tokens.push_back(token);
      h.logprobs = beams[from].logprobs;
      h.logprobs.push_back(logprobs.data()[flat]);
      if (capture) {
        h.attention = beams[from].attention;
        h.attention.insert(h.attention.end(), attention.data() + from * att, attention.data() + (from + 1) * att);
      }
      hyps.add(std::move(h), sc[flat], next_len - 1);
    }
    if (last || !any_running) break;
    for (std::int64_t rank = 0; filled < k && rank < keep; ++rank) {
      const std::int64_t flat = order[rank];
      if (is_eos(flat % vocab, s.eos_token_ids)) take(rank, sc[flat] - 1e9f);
    }
    std::swap(beams, next);
    for (std::int64_t b = 0; b < k; ++b) beam_scores[b] = next_scores[b];
    cur_len = next_len;
    // Early-stop heuristic: the best running beam, even at its current length, cannot beat
    // the worst finished hypothesis.
    if (hyps.is_done(beam_scores[0], cur_len)) break;
    model.reorder(src.data());
  }

  const auto& best = hyps.best();
  DecodeResult out;
  out.tokens = best.tokens;
  out.logprobs = best.logprobs;
  out.sequence_score = best.score;
  out.attention = best.attention;
  return out;
}

}  // namespace

void StepModel::log_softmax(const float* logits, std::int64_t rows, float* dst) {
  const std::int64_t vocab = vocab_size();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    const float lse = log_sum_exp(row, vocab);
    for (std::int64_t i = 0; i < vocab; ++i) dst[r * vocab + i] = row[i] - lse;
  }
}

DecodeResult decode(StepModel& model, const DecodeSettings& s, bool capture_attention) {
  if (s.num_beams < 1) throw InputError(fmt::format("num_beams must be at least 1, got {}", s.num_beams));
  if (s.max_length < 2)
    throw InputError(fmt::format("max_length {} leaves no room for a generated token", s.max_length));
  const std::int64_t vocab = model.vocab_size();
  if (s.decoder_start_token_id < 0 || s.decoder_start_token_id >= vocab)
    throw InputError(fmt::format("decoder_start_token_id {} is outside the vocabulary (size {})",
                                 s.decoder_start_token_id, vocab));
  if (s.num_beams > vocab)
    throw InputError(fmt::format("num_beams {} exceeds the vocabulary size {}", s.num_beams, vocab));
  return s.num_beams == 1 ? greedy(model, s, capture_attention) : beam_search(model, s, capture_attention);
}

}  // namespace xcaption
