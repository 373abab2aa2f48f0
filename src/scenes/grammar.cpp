// Caption grammar of the shapes world: caption generation, vocabulary, parsing and scoring.
//
//   caption  := object
//             | object " " relation " " object
//             | object ", " object " and " object
//   object   := article " " [size " "] color " " shape
//   article  := "a" | "an" (before a vowel: only "orange")
//   relation := "to the left of" | "to the right of" | "above" | "below"
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>

#include <xcaption/scenes.hpp>

namespace xcaption::scenes {

const std::vector<std::string>& shapes() {
  static const std::vector<std::string> values = {"circle", "square", "triangle", "star", "diamond", "cross"};
  return values;
}

const std::vector<std::string>& colors() {
  static const std::vector<std::string> values = {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"};
  return values;
}

const std::vector<std::string>& sizes() {
  static const std::vector<std::string> values = {"small", "large"};
  return values;
}

namespace {

bool contains(const std::vector<std::string>& words, std::string_view word) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

const char* article_for(std::string_view next_word) {
  return !next_word.empty() && std::string_view("aeiou").find(next_word[0]) != std::string_view::npos ? "an" : "a";
}

std::string phrase(const SceneObject& o, bool with_size) {
  const std::string body = with_size ? o.size + " " + o.color + " " + o.shape : o.color + " " + o.shape;
  return std::string(article_for(body)) + " " + body;
}

std::string relation_words(std::string_view relation) {
  if (relation == kLeftOf) return "to the left of";
  if (relation == kRightOf) return "to the right of";
  return std::string(relation);  // "above", "below"
}

}  // namespace

std::string relation_between(const SceneObject& a, const SceneObject& b) {
  const double dx = a.center[0] - b.center[0], dy = a.center[1] - b.center[1];
  if (std::fabs(dx) > std::fabs(dy)) return std::string(dx < 0 ? kLeftOf : kRightOf);
  return std::string(dy < 0 ? kAbove : kBelow);
}

std::vector<std::string> captions_for(const std::vector<SceneObject>& objects) {
  if (objects.size() == 1) return {phrase(objects[0], true)};
  if (objects.size() == 2) {
    // Canonical: the left (or top) object is the subject, so the relation is "to the left of" or
    // "above"; the second reference swaps the objects and inverts the relation.
    const std::string rel = relation_between(objects[0], objects[1]);
    const bool first_leads = rel == kLeftOf || rel == kAbove;
    const SceneObject& lead = first_leads ? objects[0] : objects[1];
    const SceneObject& other = first_leads ? objects[1] : objects[0];
    const bool horizontal = rel == kLeftOf || rel == kRightOf;
    const std::string a = phrase(lead, true), b = phrase(other, true);
    return {a + " " + relation_words(horizontal ? kLeftOf : kAbove) + " " + b,
            b + " " + relation_words(horizontal ? kRightOf : kBelow) + " " + a};
  }
  if (objects.size() == 3) {
    std::array<const SceneObject*, 3> order = {&objects[0], &objects[1], &objects[2]};
    std::stable_sort(order.begin(), order.end(),
                     [](const SceneObject* l, const SceneObject* r) { return l->center[0] < r->center[0]; });
    const bool mixed_sizes = !(objects[0].size == objects[1].size && objects[1].size == objects[2].size);
    return {phrase(*order[0], mixed_sizes) + ", " + phrase(*order[1], mixed_sizes) + " and " +
            phrase(*order[2], mixed_sizes)};
  }
  return {};
}

std::vector<std::string> vocabulary() {
  std::vector<std::string> words = {"a", "an"};
  for (const auto& w : sizes()) words.push_back(w);
  for (const auto& w : colors()) words.push_back(w);
  for (const auto& w : shapes()) words.push_back(w);
  for (const char* w : {"to", "the", "left", "right", "of", "above", "below", "and", ","}) words.emplace_back(w);
  return words;
}

namespace {

// Lower-cases, drops one final period and splits into words with "," as a separate token.
std::vector<std::string> tokenize(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 8);
  for (char ch : text) {
    const char lower = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
    if (lower == ',') {
      s += " , ";
    } else if (lower == ' ' || lower == '\t' || lower == '\n' || lower == '\r') {
      s += ' ';
    } else {
      s += lower;
    }
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  std::vector<std::string> tokens;
  std::istringstream in(s);
  for (std::string w; in >> w;) tokens.push_back(w);
  return tokens;
}

class Parser {
 public:
  explicit Parser(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}

  bool at_end() const { return pos_ == tokens_.size(); }
  bool accept(std::string_view word) {
    if (pos_ < tokens_.size() && tokens_[pos_] == word) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool accept_all(std::initializer_list<std::string_view> words) {
    const std::size_t saved = pos_;
    for (auto w : words)
      if (!accept(w)) {
        pos_ = saved;
        return false;
      }
    return true;
  }
  bool object(ParsedObject& out) {
    if (!accept("a") && !accept("an")) return false;
    if (pos_ < tokens_.size() && contains(sizes(), tokens_[pos_])) out.size = tokens_[pos_++];
    if (pos_ >= tokens_.size() || !contains(colors(), tokens_[pos_])) return false;
    out.color = tokens_[pos_++];
    if (pos_ >= tokens_.size() || !contains(shapes(), tokens_[pos_])) return false;
    out.shape = tokens_[pos_++];
    return true;
  }

 private:
  std::vector<std::string> tokens_;
  std::size_t pos_ = 0;
};

ParsedCaption parse_tokens(const std::vector<std::string>& tokens) {
  ParsedCaption result;
  Parser p(tokens);
  ParsedObject first;
  if (!p.object(first)) return {};
  result.objects.push_back(first);
  if (p.at_end()) {
    result.ok = true;
    return result;
  }
  if (p.accept(",")) {
    ParsedObject second, third;
    if (!p.object(second) || !p.accept("and") || !p.object(third) || !p.at_end()) return {};
    result.objects.push_back(second);
    result.objects.push_back(third);
    result.ok = true;
    return result;
  }
  std::string_view relation;
  if (p.accept_all({"to", "the", "left", "of"})) relation = kLeftOf;
  else if (p.accept_all({"to", "the", "right", "of"})) relation = kRightOf;
  else if (p.accept("above")) relation = kAbove;
  else if (p.accept("below")) relation = kBelow;
  else return {};
  ParsedObject second;
  if (!p.object(second) || !p.at_end()) return {};
  result.objects.push_back(second);
  result.relation = std::string(relation);
  result.ok = true;
  return result;
}

}  // namespace

ParsedCaption parse_caption(std::string_view caption) { return parse_tokens(tokenize(caption)); }

std::string normalize_caption(std::string_view caption) {
  const std::vector<std::string> tokens = tokenize(caption);
  std::string out;
  for (const auto& t : tokens) {
    if (!out.empty() && t != ",") out += ' ';
    out += t;
  }
  return out;
}

// ---- Scoring --------------------------------------------------------------------------------

namespace {

bool matches(const ParsedObject& p, const SceneObject& o) {
  return p.shape == o.shape && p.color == o.color && (p.size.empty() || p.size == o.size);
}

}  // namespace

CaptionScore score_caption(const Scene& scene, std::string_view caption) {
  CaptionScore score;
  score.scene_objects = static_cast<int>(scene.objects.size());
  const std::string normalized = normalize_caption(caption);
  score.exact_match = std::find(scene.captions.begin(), scene.captions.end(), normalized) != scene.captions.end();

  const ParsedCaption parsed = parse_caption(caption);
  score.parsed = parsed.ok;
  if (!parsed.ok) return score;
  score.caption_objects = static_cast<int>(parsed.objects.size());
  score.count_correct = score.caption_objects == score.scene_objects;

  const bool check_relation = score.scene_objects == 2 && score.caption_objects == 2;
  const bool check_order = score.scene_objects == 3 && score.caption_objects == 3;

  // Exhaustive search over one-to-one assignments (at most 3 caption objects x 3 scene objects):
  // assignment[i] is the scene object of caption object i or -1. Best = most matches, then layout
  // correct.
  const int k = score.caption_objects, n = score.scene_objects;
  std::array<int, 3> assignment{-1, -1, -1}, best{-1, -1, -1};
  int best_matched = -1;
  bool best_layout = false;
  auto evaluate = [&]() {
    int matched = 0;
    for (int i = 0; i < k; ++i) matched += assignment[i] >= 0;
    bool layout = matched == k && k == n;
    if (layout && check_relation)
      layout = relation_between(scene.objects[assignment[0]], scene.objects[assignment[1]]) == parsed.relation;
    if (layout && check_order)
      layout = scene.objects[assignment[0]].center[0] < scene.objects[assignment[1]].center[0] &&
               scene.objects[assignment[1]].center[0] < scene.objects[assignment[2]].center[0];
    if (matched > best_matched || (matched == best_matched && layout && !best_layout)) {
      best_matched = matched;
      best_layout = layout;
      best = assignment;
    }
  };
  auto search = [&](auto&& self, int i, unsigned used) -> void {
    if (i == k) {
      evaluate();
      return;
    }
    assignment[i] = -1;
    self(self, i + 1, used);
    for (int j = 0; j < n; ++j) {
      if ((used >> j) & 1u) continue;
      if (!matches(parsed.objects[i], scene.objects[j])) continue;
      assignment[i] = j;
      self(self, i + 1, used | (1u << j));
      assignment[i] = -1;
    }
  };
  search(search, 0, 0u);

  score.matched_objects = best_matched;
  score.matching.assign(best.begin(), best.begin() + k);
  for (int i = 0; i < k; ++i)
    if (best[i] >= 0 && !parsed.objects[i].size.empty()) ++score.sizes_given;
  score.all_matched = score.count_correct && best_matched == n;
  if (check_relation) score.relation_correct = best_layout;
  if (check_order) score.order_correct = best_layout;
  score.fully_correct = score.all_matched && score.relation_correct.value_or(true) && score.order_correct.value_or(true);
  return score;
}

ScoreSummary summarize_scores(const std::vector<CaptionScore>& scores) {
  ScoreSummary s;
  s.count = static_cast<std::int64_t>(scores.size());
  if (scores.empty()) return s;
  std::int64_t parsed = 0, count_ok = 0, matched = 0, caption_objects = 0, scene_objects = 0, rel_ok = 0, order_ok = 0,
               exact = 0, full = 0;
  for (const auto& c : scores) {
    parsed += c.parsed;
    count_ok += c.count_correct;
    matched += c.matched_objects;
    caption_objects += c.caption_objects;
    scene_objects += c.scene_objects;
    if (c.relation_correct) {
      ++s.relation_count;
      rel_ok += *c.relation_correct;
    }
    if (c.order_correct) {
      ++s.order_count;
      order_ok += *c.order_correct;
    }
    exact += c.exact_match;
    full += c.fully_correct;
  }
  auto rate = [](std::int64_t num, std::int64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / den; };
  s.parse_rate = rate(parsed, s.count);
  s.count_accuracy = rate(count_ok, s.count);
  s.object_precision = rate(matched, caption_objects);
  s.object_recall = rate(matched, scene_objects);
  s.relation_accuracy = rate(rel_ok, s.relation_count);
  s.order_accuracy = rate(order_ok, s.order_count);
  s.exact_match_rate = rate(exact, s.count);
  s.fully_correct_rate = rate(full, s.count);
  return s;
}

}  // namespace xcaption::scenes
