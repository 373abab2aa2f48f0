#include "src/eval/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption::eval {

namespace {

constexpr int kMaxN = 4;

// N-gram counts by order: counts[n - 1] maps the tokens joined by '\x1f' to their count.
using NgramCounts = std::array<std::unordered_map<std::string, std::int64_t>, kMaxN>;

NgramCounts count_ngrams(const std::vector<std::string>& tokens) {
  NgramCounts counts;
  for (int n = 1; n <= kMaxN; ++n) {
    for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
      std::string key = tokens[i];
      for (int k = 1; k < n; ++k) {
        key += '\x1f';
        key += tokens[i + k];
      }
      ++counts[n - 1][key];
    }
  }
  return counts;
}

void check_sizes(const char* metric, std::size_t candidates,
                 const std::vector<std::vector<std::string>>& references) {
  if (candidates != references.size())
    throw InputError(fmt::format("{}: {} candidate captions but {} reference lists", metric, candidates,
                                 references.size()));
  for (std::size_t i = 0; i < references.size(); ++i)
    if (references[i].empty()) throw InputError(fmt::format("{}: image {} has no reference caption", metric, i));
}

}  // namespace

std::vector<std::string> tokenize(std::string_view caption) {
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char ch : caption) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      flush();
    } else if (ch == ',') {
      flush();
      tokens.emplace_back(",");
    } else if (ch == '.') {
      flush();  // dropped
    } else {
      current += (u >= 'A' && u <= 'Z') ? static_cast<char>(u - 'A' + 'a') : ch;
    }
  }
  flush();
  return tokens;
}

BleuScore corpus_bleu(const std::vector<std::string>& candidates,
                      const std::vector<std::vector<std::string>>& references) {
  check_sizes("BLEU", candidates.size(), references);
  BleuScore s;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto cand = tokenize(candidates[i]);
    const auto c = static_cast<std::int64_t>(cand.size());
    // Clip by the largest count in any single reference; effective length = closest reference.
    NgramCounts max_ref;
    std::int64_t closest = -1;
    for (const auto& ref_text : references[i]) {
      const auto ref = tokenize(ref_text);
      const auto r = static_cast<std::int64_t>(ref.size());
      if (closest < 0 || std::llabs(r - c) < std::llabs(closest - c) ||
          (std::llabs(r - c) == std::llabs(closest - c) && r < closest))
        closest = r;
      const NgramCounts counts = count_ngrams(ref);
      for (int n = 0; n < kMaxN; ++n)
        for (const auto& [gram, count] : counts[n]) {
          auto& m = max_ref[n][gram];
          m = std::max(m, count);
        }
    }
    s.candidate_length += c;
    s.reference_length += closest;
    const NgramCounts counts = count_ngrams(cand);
    for (int n = 0; n < kMaxN; ++n) {
      s.guess[n] += std::max<std::int64_t>(0, c - n);
      for (const auto& [gram, count] : counts[n]) {
        const auto it = max_ref[n].find(gram);
        if (it != max_ref[n].end()) s.correct[n] += std::min(count, it->second);
      }
    }
  }
  if (candidates.empty()) return s;
  // ref: pycocoevalcap bleu_scorer.compute_score (tiny = 1e-15, small = 1e-9).
  constexpr double kTiny = 1e-15, kSmall = 1e-9;
  const double ratio = (static_cast<double>(s.candidate_length) + kTiny) / (static_cast<double>(s.reference_length) + kSmall);
  s.brevity_penalty = ratio < 1 ? std::exp(1 - 1 / ratio) : 1.0;
  double product = 1;
  for (int n = 0; n < kMaxN; ++n) {
    product *= (static_cast<double>(s.correct[n]) + kTiny) / (static_cast<double>(s.guess[n]) + kSmall);
    s.bleu[n] = std::pow(product, 1.0 / (n + 1)) * s.brevity_penalty;
  }
  return s;
}

namespace {

struct TfIdf {
  std::array<std::unordered_map<std::string, double>, kMaxN> weights;
  std::array<double, kMaxN> norm{};
  std::int64_t length = 0;  // number of bigrams (coco-caption's length)
};

TfIdf tf_idf(const NgramCounts& counts, const std::unordered_map<std::string, double>& df, double log_images) {
  TfIdf v;
  for (int n = 0; n < kMaxN; ++n) {
    for (const auto& [gram, tf] : counts[n]) {
      const auto it = df.find(gram);
      const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
      const double w = static_cast<double>(tf) * (log_images - d);
      v.weights[n][gram] = w;
      v.norm[n] += w * w;
      if (n == 1) v.length += tf;
    }
    v.norm[n] = std::sqrt(v.norm[n]);
  }
  return v;
}

}  // namespace

CiderScore cider_d(const std::vector<std::string>& candidates,
                   const std::vector<std::vector<std::string>>& references, double sigma) {
  check_sizes("CIDEr-D", candidates.size(), references);
  CiderScore s;
  if (candidates.empty()) return s;

  // Document frequency: in how many images' reference sets an n-gram occurs. N-grams of different
  // orders cannot collide because their keys hold different numbers of separators.
  std::vector<std::vector<NgramCounts>> ref_counts(references.size());
  std::unordered_map<std::string, double> df;
  for (std::size_t i = 0; i < references.size(); ++i) {
    std::unordered_set<std::string> seen;
    for (const auto& ref : references[i]) {
      ref_counts[i].push_back(count_ngrams(tokenize(ref)));
      for (const auto& order : ref_counts[i].back())
        for (const auto& entry : order) seen.insert(entry.first);
    }
    for (const auto& gram : seen) df[gram] += 1;
  }
  const double log_images = std::log(static_cast<double>(references.size()));

  s.per_image.reserve(candidates.size());
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const TfIdf cand = tf_idf(count_ngrams(tokenize(candidates[i])), df, log_images);
    double total = 0;  // sum over references of the mean over n
    for (const auto& rc : ref_counts[i]) {
      const TfIdf ref = tf_idf(rc, df, log_images);
      const double delta = static_cast<double>(cand.length - ref.length);
      const double penalty = std::exp(-(delta * delta) / (2 * sigma * sigma));
      double sum_n = 0;
      for (int n = 0; n < kMaxN; ++n) {
        if (cand.norm[n] == 0 || ref.norm[n] == 0) continue;
        double dot = 0;
        for (const auto& [gram, w] : cand.weights[n]) {
          const auto it = ref.weights[n].find(gram);
          if (it != ref.weights[n].end()) dot += std::min(w, it->second) * it->second;
        }
        sum_n += dot / (cand.norm[n] * ref.norm[n]) * penalty;
      }
      total += sum_n / kMaxN;
    }
    s.per_image.push_back(10.0 * total / static_cast<double>(ref_counts[i].size()));
  }
  double sum = 0;
  for (double v : s.per_image) sum += v;
  s.mean = sum / static_cast<double>(s.per_image.size());
  return s;
}

}  // namespace xcaption::eval
