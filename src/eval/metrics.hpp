// Caption-overlap metrics with coco-caption's definitions (pycocoevalcap BLEU and CIDEr-D), written
// from those definitions: corpus BLEU-1..4 with multiple references and CIDEr-D.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xcaption::eval {

/// The tokenisation both metrics use: ASCII lower-case; "," and "." are split off as tokens of their
/// own; whitespace separates tokens; "." tokens are then dropped (coco-caption's PTB tokeniser drops
/// punctuation; "," is kept because the shapes grammar uses it to separate objects).
std::vector<std::string> tokenize(std::string_view caption);

/// Corpus-level BLEU as coco-caption computes it (pycocoevalcap Bleu, option "closest"):
/// - per image, n-gram matches are clipped by the largest count of that n-gram in any one
///   reference; matches and candidate n-gram counts are summed over the corpus;
/// - the effective reference length of an image is the reference length closest to the candidate's
///   (ties: the shorter), summed over the corpus;
/// - BLEU-N = (prod_{k<=N} (correct_k + 1e-15) / (guess_k + 1e-9))^(1/N), times the brevity
///   penalty exp(1 - r/c) when c < r (c = candidate tokens, r = effective reference tokens). The
///   1e-15 / 1e-9 terms are coco-caption's guards; they make a zero-match order give ~0, not NaN.
struct BleuScore {
  std::array<double, 4> bleu{};           // BLEU-1 .. BLEU-4
  std::array<std::int64_t, 4> correct{};  // clipped n-gram matches, n = 1..4
  std::array<std::int64_t, 4> guess{};    // candidate n-grams, n = 1..4
  std::int64_t candidate_length = 0;      // c
  std::int64_t reference_length = 0;      // r (closest reference per image)
  double brevity_penalty = 1.0;
};

/// Candidates[i] is scored against references[i]. Throws InputError when the sizes differ or an
/// image has no reference. An empty corpus gives all zeros.
BleuScore corpus_bleu(const std::vector<std::string>& candidates,
                      const std::vector<std::vector<std::string>>& references);

/// CIDEr-D as coco-caption computes it (pycocoevalcap Cider):
/// - every caption becomes, for n = 1..4, a vector of n-gram tf-idf weights
///   tf * (log(I) - log(max(1, df))), with tf the raw count, I the number of images and df the
///   number of images whose references contain the n-gram (over the evaluated set only);
/// - per reference and n: sum over the candidate's n-grams of min(w_cand, w_ref) * w_ref (clipping),
///   divided by |w_cand| |w_ref| (0 when either norm is 0, where coco-caption would give NaN),
///   times the length penalty exp(-(l_cand - l_ref)^2 / (2 sigma^2)) with l = the caption's number
///   of bigrams (coco-caption's choice; equals words - 1 for non-empty captions);
/// - an image scores 10 * (mean over n) / (number of references), summed over references; the
///   corpus score is the mean over images.
struct CiderScore {
  double mean = 0;
  std::vector<double> per_image;
};

/// Throws InputError like corpus_bleu.
CiderScore cider_d(const std::vector<std::string>& candidates,
                   const std::vector<std::vector<std::string>>& references, double sigma = 6.0);

}  // namespace xcaption::eval
