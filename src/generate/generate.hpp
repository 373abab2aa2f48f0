// Greedy and beam-search decoding with transformers' generate() semantics
// (ref: transformers generation/utils.py, beam_search.py, logits_process.py).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace xcaption {

/// Settings after resolving the model folder's defaults and the caller's overrides.
/// Lengths count the decoder start token, as HF's max_length/min_length do.
struct DecodeSettings {
  std::int64_t num_beams = 1;
  std::int64_t max_length = 20;  // total tokens including the start token
  std::int64_t min_length = 0;   // eos is suppressed while cur_len < min_length
  std::int64_t no_repeat_ngram_size = 0;
  float repetition_penalty = 1.0f;
  double length_penalty = 1.0;
  enum class EarlyStopping { False, True, Never } early_stopping = EarlyStopping::False;
  std::vector<std::int64_t> eos_token_ids;
  std::int64_t decoder_start_token_id = 0;
};

/// What generation needs from a model: advance `rows` sequences by one token.
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual std::int64_t vocab_size() const = 0;
  /// Floats of attention captured per row per step (0 when not captured).
  virtual std::int64_t attention_floats() const = 0;
  /// Starts `rows` empty sequences.
  virtual void begin(std::int64_t rows) = 0;
  /// Feeds tokens[r] to row r. logits: (rows, vocab). attention: (rows, attention_floats()) or null.
  virtual void step(const std::int64_t* tokens, float* logits, float* attention) = 0;
  /// Row i continues from old row src[i].
  virtual void reorder(const std::int64_t* src) = 0;
  /// dst (rows, vocab) = log_softmax of logits (rows, vocab), float32. The default is a portable
  /// loop; a model may hand it to its backend's vectorised kernel.
  virtual void log_softmax(const float* logits, std::int64_t rows, float* dst);
};

struct DecodeResult {
  std::vector<std::int64_t> tokens;  // generated after the start token (final eos included)
  std::vector<float> logprobs;       // log_softmax(raw logits)[token] at each step
  double sequence_score = 0.0;       // beams: HF sequences_scores; greedy: sum of logprobs
  std::vector<float> attention;      // (tokens.size(), attention_floats()) when captured
};

/// Runs generation. capture_attention: record model.step()'s attention for the returned sequence
/// (tracked through beam reordering).
DecodeResult decode(StepModel& model, const DecodeSettings& settings, bool capture_attention);

// Logits processors on one row, in HF's order of application. `history` holds the row's tokens
// so far including the decoder start token. Exposed for unit tests.
void apply_repetition_penalty(std::span<float> scores, std::span<const std::int64_t> history,
                              float penalty);
void apply_no_repeat_ngram(std::span<float> scores, std::span<const std::int64_t> history,
                           std::int64_t n);
void apply_min_length(std::span<float> scores, std::int64_t cur_len, std::int64_t min_length,
                      std::span<const std::int64_t> eos_token_ids);

/// HF BeamHypotheses: keeps the num_beams best finished hypotheses. Exposed for unit tests.
class BeamHypotheses {
 public:
  struct Hypothesis {
    double score;
    std::vector<std::int64_t> tokens;  // after the start token, eos included when it ended so
    std::vector<float> logprobs;
    std::vector<float> attention;
  };
  BeamHypotheses(std::int64_t num_beams, double length_penalty,
                 DecodeSettings::EarlyStopping early_stopping, std::int64_t max_length);
  /// sum_logprobs / generated_len ** length_penalty; kept if among the best num_beams.
  void add(Hypothesis hyp, double sum_logprobs, std::int64_t generated_len);
  /// HF is_done(best_sum_logprobs, cur_len) with cur_len counting the start token and the
  /// token being chosen.
  bool is_done(double best_sum_logprobs, std::int64_t cur_len) const;
  std::size_t size() const { return beams_.size(); }
  double worst_score() const { return worst_score_; }
  /// The best hypothesis; among equal scores the one added last (as Python's sorted().pop()).
  const Hypothesis& best() const;
  const std::vector<Hypothesis>& hypotheses() const { return beams_; }

 private:
  std::int64_t num_beams_;
  double length_penalty_;
  DecodeSettings::EarlyStopping early_stopping_;
  std::int64_t max_length_;
  double worst_score_ = 1e9;
  std::vector<Hypothesis> beams_;
};

}  // namespace xcaption
