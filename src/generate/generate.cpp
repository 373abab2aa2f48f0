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
  return s.repetition_penalty != 1.0f || s.no_repeat_ngram_size > 0 || s.min_length > 0 ||
         s.forced_bos_token_id || s.forced_eos_token_id;
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
  const auto cur_len = static_cast<std::int64_t>(history.size());
  if (s.min_length > 0) apply_min_length(scores, cur_len, s.min_length, s.eos_token_ids);
  if (s.forced_bos_token_id) apply_forced_token(scores, cur_len, 1, *s.forced_bos_token_id);
  if (s.forced_eos_token_id) apply_forced_token(scores, cur_len, s.max_length - 1, *s.forced_eos_token_id);
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

void apply_forced_token(std::span<float> scores, std::int64_t cur_len, std::int64_t at, std::int64_t token) {
  if (cur_len != at || token < 0 || token >= static_cast<std::int64_t>(scores.size())) return;
  std::fill(scores.begin(), scores.end(), kNegInf);
  scores[static_cast<std::size_t>(token)] = 0.0f;
}

BeamHypotheses::BeamHypotheses(std::int64_t num_beams, double length_penalty,
                               DecodeSettings::EarlyStopping early_stopping,
                               std::int64_t max_length, std::int64_t prompt_length)
    : num_beams_(num_beams), length_penalty_(length_penalty), early_stopping_(early_stopping),
      max_length_(max_length), prompt_length_(prompt_length) {}

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
  // ref: transformers >= 4.50 _check_early_stop_heuristic: lengths exclude the decoder prompt.
  std::int64_t len = cur_len - prompt_length_;
  if (early_stopping_ == ES::Never && length_penalty_ > 0) len = max_length_ - prompt_length_;
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

// ref: GenerationMixin._sample with do_sample=False: the processors run on the raw logits, then
// argmax (the first index on ties, as torch.argmax).
class GreedySearch final : public Search {
 public:
  GreedySearch(const DecodeSettings& s, std::int64_t vocab, std::int64_t att, bool capture)
      : s_(s), vocab_(vocab), att_(capture ? att : 0), capture_(capture), history_(s.prompt) {
    const auto max = static_cast<std::size_t>(s.max_length);
    history_.reserve(max);
    processed_.resize(static_cast<std::size_t>(vocab));
    out_.tokens.reserve(max);
    out_.logprobs.reserve(max);
    if (capture) out_.attention.reserve(static_cast<std::size_t>(att_) * max);
    token_ = history_.front();
  }
  std::int64_t rows() const override { return 1; }
  const std::int64_t* tokens() const override { return &token_; }
  bool wants_scores() const override { return fed_ + 1 == static_cast<std::int64_t>(history_.size()); }
  bool done() const override { return done_; }
  DecodeResult result() const override { return out_; }
  std::span<const std::int64_t> committed() const override { return out_.tokens; }

  const std::int64_t* advance(const float* logits, const float* logprobs, const float* attention) override {
    ++fed_;
    if (fed_ < static_cast<std::int64_t>(history_.size())) {  // still feeding the prompt
      token_ = history_[static_cast<std::size_t>(fed_)];
      return nullptr;
    }
    std::copy(logits, logits + vocab_, processed_.data());
    apply_processors({processed_.data(), static_cast<std::size_t>(vocab_)}, history_, s_);
    std::int64_t best = 0;
    for (std::int64_t i = 1; i < vocab_; ++i)
      if (processed_.data()[i] > processed_.data()[best]) best = i;
    const float logprob = logprobs[best];
    history_.push_back(best);
    out_.tokens.push_back(best);
    out_.logprobs.push_back(logprob);
    out_.sequence_score += logprob;
    if (capture_ && attention) out_.attention.insert(out_.attention.end(), attention, attention + att_);
    token_ = best;
    done_ = is_eos(best, s_.eos_token_ids) || static_cast<std::int64_t>(history_.size()) >= s_.max_length;
    return nullptr;
  }

 private:
  const DecodeSettings& s_;
  std::int64_t vocab_, att_;
  bool capture_;
  std::vector<std::int64_t> history_;  // prompt, then generated tokens
  std::int64_t fed_ = 0;               // tokens of history_ fed to the model
  std::int64_t token_ = 0;
  bool done_ = false;
  FloatBuffer processed_;
  DecodeResult out_;
};

// ref: transformers >= 4.50 GenerationMixin._beam_search.
class BeamSearch final : public Search {
 public:
  BeamSearch(const DecodeSettings& s, std::int64_t vocab, std::int64_t att, bool capture)
      : s_(s), k_(s.num_beams), vocab_(vocab), att_(capture ? att : 0), capture_(capture),
        keep_(std::max<std::int64_t>(2, 1 + static_cast<std::int64_t>(s.eos_token_ids.size())) * k_),
        processing_(has_processors(s)),
        hyps_(k_, s.length_penalty, s.early_stopping, s.max_length, static_cast<std::int64_t>(s.prompt.size())) {
    const auto k = static_cast<std::size_t>(k_), max = static_cast<std::size_t>(s.max_length);
    beams_.resize(k);
    next_.resize(k);
    for (auto* set : {&beams_, &next_})
      for (auto& b : *set) {
        b.history.reserve(max);
        b.logprobs.reserve(max);
        if (capture) b.attention.reserve(static_cast<std::size_t>(att_) * max);
      }
    for (auto& b : beams_) b.history = s.prompt;
    // ref: all beams start identical; only the first may expand at the first choice.
    beam_scores_.assign(k, -1e9f);
    beam_scores_[0] = 0.0f;
    scores_.resize(k * static_cast<std::size_t>(vocab));
    tokens_.assign(k, s.prompt.front());
    src_.resize(k);
    order_.resize(static_cast<std::size_t>(keep_));
    next_scores_.resize(k);
    cur_len_ = static_cast<std::int64_t>(s.prompt.size());
  }
  std::int64_t rows() const override { return k_; }
  const std::int64_t* tokens() const override { return tokens_.data(); }
  bool wants_scores() const override { return fed_ + 1 == cur_len_; }
  bool done() const override { return done_; }
  std::span<const std::int64_t> committed() const override {
    if (!done_) return {};
    return hyps_.best().tokens;
  }

  DecodeResult result() const override {
    const auto& best = hyps_.best();
    DecodeResult out;
    out.tokens = best.tokens;
    out.logprobs = best.logprobs;
    out.sequence_score = best.score;
    out.attention = best.attention;
    return out;
  }

  const std::int64_t* advance(const float* /*logits*/, const float* logprobs, const float* attention) override {
    ++fed_;
    if (fed_ < cur_len_) {  // still feeding the prompt: every beam gets the same token
      std::fill(tokens_.begin(), tokens_.end(), s_.prompt[static_cast<std::size_t>(fed_)]);
      return nullptr;
    }
    const std::int64_t k = k_, vocab = vocab_, att = att_;
    for (std::int64_t b = 0; b < k; ++b) {
      const float* lp = logprobs + b * vocab;
      float* sc = scores_.data() + b * vocab;
      const float running = beam_scores_[static_cast<std::size_t>(b)];
      if (processing_) {
        std::copy(lp, lp + vocab, sc);
        apply_processors({sc, static_cast<std::size_t>(vocab)}, beams_[static_cast<std::size_t>(b)].history, s_);
        for (std::int64_t i = 0; i < vocab; ++i) sc[i] += running;
      } else {
        for (std::int64_t i = 0; i < vocab; ++i) sc[i] = lp[i] + running;
      }
    }
    // top `keep` over beams x vocab, sorted by score (ties: lower flat index first).
    const float* sc = scores_.data();
    top_k(sc, k * vocab, keep_, order_.data());

    const std::int64_t next_len = cur_len_ + 1;  // sequence length once this step's token is added
    const bool last = next_len >= s_.max_length;  // every candidate stops here
    const auto prompt = static_cast<std::int64_t>(s_.prompt.size());
    // Candidates that stop (eos, or the length limit) become finished hypotheses when ranked
    // among the first K; the next running beams are the best K that did not stop (stopped
    // ones, at -1e9, only fill slots nothing else can).
    std::int64_t filled = 0;
    auto take = [&](std::int64_t rank, float score) {
      const std::int64_t flat = order_[static_cast<std::size_t>(rank)], from = flat / vocab, token = flat % vocab;
      Beam& nb = next_[static_cast<std::size_t>(filled)];
      const Beam& ob = beams_[static_cast<std::size_t>(from)];
      nb.history.assign(ob.history.begin(), ob.history.end());
      nb.history.push_back(token);
      nb.logprobs.assign(ob.logprobs.begin(), ob.logprobs.end());
      nb.logprobs.push_back(logprobs[flat]);
      if (capture_) {
        nb.attention.assign(ob.attention.begin(), ob.attention.end());
        if (attention) nb.attention.insert(nb.attention.end(), attention + from * att, attention + (from + 1) * att);
      }
      next_scores_[static_cast<std::size_t>(filled)] = score;
      src_[static_cast<std::size_t>(filled)] = from;
      ++filled;
    };
    bool any_running = false;
    for (std::int64_t rank = 0; rank < keep_; ++rank) {
      const std::int64_t flat = order_[static_cast<std::size_t>(rank)], from = flat / vocab, token = flat % vocab;
      const bool stops = last || is_eos(token, s_.eos_token_ids);
      if (!stops) {
        any_running = true;
        if (filled < k) take(rank, sc[flat]);
        continue;
      }
      if (rank >= k) continue;  // a stop outside the top num_beams does not finish a beam
      const Beam& ob = beams_[static_cast<std::size_t>(from)];
      BeamHypotheses::Hypothesis h;
      h.tokens.assign(ob.history.begin() + prompt, ob.history.end());
      h.tokens.push_back(token);
      h.logprobs = ob.logprobs;
      h.logprobs.push_back(logprobs[flat]);
      if (capture_) {
        h.attention = ob.attention;
        if (attention) h.attention.insert(h.attention.end(), attention + from * att, attention + (from + 1) * att);
      }
      hyps_.add(std::move(h), sc[flat], next_len - prompt);
    }
    if (last || !any_running) {
      done_ = true;
      return nullptr;
    }
    for (std::int64_t rank = 0; filled < k && rank < keep_; ++rank) {
      const std::int64_t flat = order_[static_cast<std::size_t>(rank)];
      if (is_eos(flat % vocab, s_.eos_token_ids)) take(rank, sc[flat] - 1e9f);
    }
    std::swap(beams_, next_);
    for (std::int64_t b = 0; b < k; ++b) beam_scores_[static_cast<std::size_t>(b)] = next_scores_[static_cast<std::size_t>(b)];
    cur_len_ = next_len;
    // Early-stop heuristic: the best running beam, even at its current length, cannot beat the
    // worst finished hypothesis.
    if (hyps_.is_done(beam_scores_[0], cur_len_)) {
      done_ = true;
      return nullptr;
    }
    for (std::int64_t b = 0; b < k; ++b) tokens_[static_cast<std::size_t>(b)] = beams_[static_cast<std::size_t>(b)].history.back();
    return src_.data();
  }

 private:
  struct Beam {
    std::vector<std::int64_t> history;  // prompt first
    std::vector<float> logprobs;
    std::vector<float> attention;
  };
  const DecodeSettings& s_;
  std::int64_t k_, vocab_, att_;
  bool capture_;
  std::int64_t keep_;
  bool processing_;
  BeamHypotheses hyps_;
  std::vector<Beam> beams_, next_;
  std::vector<float> beam_scores_, next_scores_;
  FloatBuffer scores_;
  std::vector<std::int64_t> tokens_, src_, order_;
  std::int64_t cur_len_ = 0, fed_ = 0;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Search> Search::create(const DecodeSettings& s, std::int64_t vocab, std::int64_t att,
                                       bool capture) {
  if (s.num_beams < 1) throw InputError(fmt::format("num_beams must be at least 1, got {}", s.num_beams));
  if (s.prompt.empty()) throw InputError("generation needs a decoder prompt (at least the start token)");
  if (s.max_length <= static_cast<std::int64_t>(s.prompt.size()))
    throw InputError(fmt::format("max_length {} leaves no room for a generated token after the {}-token prompt",
                                 s.max_length, s.prompt.size()));
  for (const std::int64_t id : s.prompt)
    if (id < 0 || id >= vocab)
      throw InputError(fmt::format("decoder prompt token {} is outside the vocabulary (size {})", id, vocab));
  if (s.num_beams > vocab)
    throw InputError(fmt::format("num_beams {} exceeds the vocabulary size {}", s.num_beams, vocab));
  if (s.num_beams == 1) return std::make_unique<GreedySearch>(s, vocab, att, capture);
  return std::make_unique<BeamSearch>(s, vocab, att, capture);
}

void StepModel::log_softmax(const float* logits, std::int64_t rows, float* dst) {
  const std::int64_t vocab = vocab_size();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    const float lse = log_sum_exp(row, vocab);
    for (std::int64_t i = 0; i < vocab; ++i) dst[r * vocab + i] = row[i] - lse;
  }
}

DecodeResult decode(StepModel& model, DecoderState& state, const DecodeSettings& s, bool capture_attention) {
  const DecodeJob job{&state, &s, capture_attention};
  return std::move(decode_together(model, {&job, 1}).front());
}

struct DecodeBatch::Active {
  std::int64_t id;
  DecodeJob job;
  std::unique_ptr<Search> search;
};

DecodeBatch::DecodeBatch(StepModel& model) : model_(model) {}
DecodeBatch::~DecodeBatch() = default;

std::int64_t DecodeBatch::add(const DecodeJob& job) {
  if (job.state->rows() != job.settings->num_beams)
    throw InputError(fmt::format("decoder state has {} rows for {} beams", job.state->rows(), job.settings->num_beams));
  auto search = Search::create(*job.settings, model_.vocab_size(), model_.attention_floats(), job.capture_attention);
  active_.push_back(std::make_unique<Active>(Active{next_id_, job, std::move(search)}));
  return next_id_++;
}

void DecodeBatch::remove(std::int64_t id) {
  for (auto it = active_.begin(); it != active_.end(); ++it)
    if ((*it)->id == id) {
      active_.erase(it);
      return;
    }
}

std::int64_t DecodeBatch::rows() const {
  std::int64_t n = 0;
  for (const auto& a : active_) n += a->search->rows();
  return n;
}

std::span<const std::int64_t> DecodeBatch::committed(std::int64_t id) const {
  for (const auto& a : active_)
    if (a->id == id) return a->search->committed();
  return {};
}

void DecodeBatch::step() {
  if (active_.empty()) return;
  const std::int64_t vocab = model_.vocab_size(), att = model_.attention_floats();
  const std::int64_t rows = this->rows();
  bool capture = false;
  for (const auto& a : active_) capture = capture || a->job.capture_attention;
  // Buffers grow to the most rows seen; a steady batch allocates nothing per step.
  const auto total = static_cast<std::size_t>(rows);
  if (logits_.size() < total * static_cast<std::size_t>(vocab)) {
    logits_.resize(total * static_cast<std::size_t>(vocab));
    logprobs_.resize(total * static_cast<std::size_t>(vocab));
  }
  if (capture && attention_.size() < total * static_cast<std::size_t>(std::max<std::int64_t>(att, 1)))
    attention_.resize(total * static_cast<std::size_t>(std::max<std::int64_t>(att, 1)));
  if (tokens_.size() < total) tokens_.resize(total);
  states_.clear();
  std::int64_t row = 0;
  for (const auto& a : active_) {
    states_.push_back(a->job.state);
    std::copy(a->search->tokens(), a->search->tokens() + a->search->rows(), tokens_.begin() + row);
    row += a->search->rows();
  }
  model_.step(states_, tokens_.data(), logits_.data(), capture ? attention_.data() : nullptr);
  // One log-softmax over each run of consecutive rows whose search looks at this step's scores.
  row = 0;
  for (std::size_t i = 0; i < active_.size();) {
    if (!active_[i]->search->wants_scores()) {
      row += active_[i++]->search->rows();
      continue;
    }
    const std::int64_t first = row;
    while (i < active_.size() && active_[i]->search->wants_scores()) row += active_[i++]->search->rows();
    model_.log_softmax(logits_.data() + first * vocab, row - first, logprobs_.data() + first * vocab);
  }
  row = 0;
  for (auto& a : active_) {
    const std::int64_t n = a->search->rows();
    const std::int64_t* src = a->search->advance(logits_.data() + row * vocab, logprobs_.data() + row * vocab,
                                                 a->job.capture_attention ? attention_.data() + row * att : nullptr);
    if (src) a->job.state->reorder(src);
    row += n;
  }
  for (std::size_t i = 0; i < active_.size();) {
    if (active_[i]->search->done()) {
      finished_.emplace_back(active_[i]->id, active_[i]->search->result());
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

std::vector<std::pair<std::int64_t, DecodeResult>> DecodeBatch::take_finished() {
  std::vector<std::pair<std::int64_t, DecodeResult>> out;
  out.swap(finished_);
  return out;
}

std::vector<DecodeResult> decode_together(StepModel& model, std::span<const DecodeJob> jobs) {
  DecodeBatch batch(model);
  std::vector<std::int64_t> ids;
  for (const auto& job : jobs) ids.push_back(batch.add(job));
  std::vector<DecodeResult> results(jobs.size());
  while (!batch.empty()) {
    batch.step();
    for (auto& [id, result] : batch.take_finished())
      results[static_cast<std::size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin())] = std::move(result);
  }
  return results;
}

}  // namespace xcaption
