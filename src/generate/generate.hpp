// Greedy and beam-search decoding with transformers' generate() semantics
// (ref: transformers generation/utils.py, beam_search.py, logits_process.py).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace xcaption {

/// Settings after resolving the model folder's defaults and the caller's overrides.
/// Lengths count the decoder prompt, as HF's max_length/min_length do.
struct DecodeSettings {
  std::int64_t num_beams = 1;
  std::int64_t max_length = 20;  // total tokens including the prompt
  std::int64_t min_length = 0;   // eos is suppressed while cur_len < min_length
  std::int64_t no_repeat_ngram_size = 0;
  float repetition_penalty = 1.0f;
  double length_penalty = 1.0;
  enum class EarlyStopping { False, True, Never } early_stopping = EarlyStopping::False;
  std::vector<std::int64_t> eos_token_ids;
  /// ref: ForcedBOSTokenLogitsProcessor: the only token allowed when the history holds one token
  /// (the first choice after a one-token decoder prompt).
  std::optional<std::int64_t> forced_bos_token_id;
  /// ref: ForcedEOSTokenLogitsProcessor: the only token allowed at history length max_length - 1.
  std::optional<std::int64_t> forced_eos_token_id;
  /// The decoder input before the first generated token: the start token, then the prompt's ids
  /// (HF's decoder_input_ids / input_ids). Never empty.
  std::vector<std::int64_t> prompt;
};

/// One sequence group being decoded (the rows of one image: 1 for greedy, num_beams for beam
/// search): the model's caches for those rows. Created by the model; generation only reorders.
class DecoderState {
 public:
  virtual ~DecoderState() = default;
  virtual std::int64_t rows() const = 0;
  /// Row i continues from old row src[i].
  virtual void reorder(const std::int64_t* src) = 0;
};

/// What generation needs from a model: advance every row of several groups by one token.
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual std::int64_t vocab_size() const = 0;
  /// Floats of attention captured per row per step (0 when not captured).
  virtual std::int64_t attention_floats() const = 0;
  /// Feeds tokens[r] to row r, where the rows of groups[g] follow those of groups[g - 1].
  /// logits: (rows, vocab). attention: (rows, attention_floats()) or null.
  virtual void step(std::span<DecoderState* const> groups, const std::int64_t* tokens, float* logits,
                    float* attention) = 0;
  /// dst (rows, vocab) = log_softmax of logits (rows, vocab), float32. The default is a portable
  /// loop; a model may hand it to its backend's vectorised kernel.
  virtual void log_softmax(const float* logits, std::int64_t rows, float* dst);
};

struct DecodeResult {
  std::vector<std::int64_t> tokens;  // generated after the prompt (final eos included)
  std::vector<float> logprobs;       // log_softmax(raw logits)[token] at each step
  double sequence_score = 0.0;       // beams: HF sequences_scores; greedy: sum of logprobs
  std::vector<float> attention;      // (tokens.size(), attention_floats()) when captured
};

/// One group's search with transformers' generate() semantics: greedy (1 row) or beam search
/// (num_beams rows). A state machine, so that a driver can step the rows of several groups
/// through one model call: feed tokens(), then advance() with that step's outputs.
class Search {
 public:
  virtual ~Search() = default;
  /// Throws InputError for settings that cannot run (no beams, no room, prompt id outside the
  /// vocabulary, more beams than tokens).
  static std::unique_ptr<Search> create(const DecodeSettings& settings, std::int64_t vocab,
                                        std::int64_t attention_floats, bool capture_attention);
  virtual std::int64_t rows() const = 0;
  /// The token each row is fed at the next step.
  virtual const std::int64_t* tokens() const = 0;
  /// False while the prompt is being fed: that step's logits are not looked at.
  virtual bool wants_scores() const = 0;
  /// Consumes the step's raw logits (rows, vocab), their log-softmax (only when wants_scores()
  /// was true; may be null otherwise) and attention (rows, attention_floats) or null. Returns the
  /// reorder the rows' caches need before the next step (src indices), or null.
  virtual const std::int64_t* advance(const float* logits, const float* logprobs, const float* attention) = 0;
  virtual bool done() const = 0;
  virtual DecodeResult result() const = 0;
  /// Generated tokens that no later step can change (greedy: all so far; beam search: none until
  /// it is done), for streaming.
  virtual std::span<const std::int64_t> committed() const = 0;
};

/// Runs one group's generation on `state` (its rows == settings.num_beams).
/// capture_attention: record model.step()'s attention for the returned sequence (tracked through
/// beam reordering).
DecodeResult decode(StepModel& model, DecoderState& state, const DecodeSettings& settings,
                    bool capture_attention);

struct DecodeJob {
  DecoderState* state;
  const DecodeSettings* settings;
  bool capture_attention = false;
};

/// Groups decoded together, joining and leaving between steps: each step() feeds the rows of every
/// active group through one model.step() (one matrix product per layer for all of them); a group
/// leaves once its search is done. Each group's result is the one decode() would give it alone
/// (up to float rounding of a larger product). Not thread-safe.
class DecodeBatch {
 public:
  explicit DecodeBatch(StepModel& model);
  ~DecodeBatch();
  /// Adds a group (its state and settings must outlive it). Returns its id. Throws InputError
  /// for settings Search::create refuses or a state whose rows differ from num_beams.
  std::int64_t add(const DecodeJob& job);
  /// Drops a group without a result (a cancelled request). Unknown ids are ignored.
  void remove(std::int64_t id);
  bool empty() const { return active_.empty(); }
  std::int64_t groups() const { return static_cast<std::int64_t>(active_.size()); }
  std::int64_t rows() const;
  /// One step of every active group.
  void step();
  /// Tokens of group `id` that are final (see Search::committed); empty for an unknown id.
  std::span<const std::int64_t> committed(std::int64_t id) const;
  /// Groups finished since the last call, with their results, in the order they finished.
  std::vector<std::pair<std::int64_t, DecodeResult>> take_finished();

 private:
  struct Active;
  StepModel& model_;
  std::vector<std::unique_ptr<Active>> active_;
  std::vector<std::pair<std::int64_t, DecodeResult>> finished_;
  std::int64_t next_id_ = 0;
  FloatBuffer logits_, logprobs_, attention_;
  std::vector<std::int64_t> tokens_;
  std::vector<DecoderState*> states_;
};

/// All `jobs` through one DecodeBatch until every one is done. Results in job order.
std::vector<DecodeResult> decode_together(StepModel& model, std::span<const DecodeJob> jobs);

// Logits processors on one row, in HF's order of application. `history` holds the row's tokens
// so far including the decoder prompt. Exposed for unit tests.
void apply_repetition_penalty(std::span<float> scores, std::span<const std::int64_t> history,
                              float penalty);
void apply_no_repeat_ngram(std::span<float> scores, std::span<const std::int64_t> history,
                           std::int64_t n);
void apply_min_length(std::span<float> scores, std::int64_t cur_len, std::int64_t min_length,
                      std::span<const std::int64_t> eos_token_ids);
/// Every score -inf except `token`'s, which becomes 0, when the history length `cur_len` is
/// `at` (ForcedBOS: at 1; ForcedEOS: at max_length - 1).
void apply_forced_token(std::span<float> scores, std::int64_t cur_len, std::int64_t at, std::int64_t token);

/// HF BeamHypotheses: keeps the num_beams best finished hypotheses. Exposed for unit tests.
class BeamHypotheses {
 public:
  struct Hypothesis {
    double score;
    std::vector<std::int64_t> tokens;  // after the start token, eos included when it ended so
    std::vector<float> logprobs;
    std::vector<float> attention;
  };
  /// prompt_length: tokens before the first generated one (the start token and any prompt);
  /// lengths in the score count only generated tokens.
  BeamHypotheses(std::int64_t num_beams, double length_penalty,
                 DecodeSettings::EarlyStopping early_stopping, std::int64_t max_length,
                 std::int64_t prompt_length = 1);
  /// sum_logprobs / generated_len ** length_penalty; kept if among the best num_beams.
  void add(Hypothesis hyp, double sum_logprobs, std::int64_t generated_len);
  /// HF is_done(best_sum_logprobs, cur_len) with cur_len counting the prompt and the tokens
  /// generated so far.
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
  std::int64_t prompt_length_;
  double worst_score_ = 1e9;
  std::vector<Hypothesis> beams_;
};

}  // namespace xcaption
