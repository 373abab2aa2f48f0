#include "models/florence2/tasks.hpp"

#include <algorithm>
#include <regex>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

namespace xcaption::florence2 {

namespace {

using ojson = nlohmann::ordered_json;

struct TaskEntry {
  const char* name;
  const char* answer;  // post-processing type
  const char* prompt;  // fixed prompt, or a template with {input}
  bool input;
};

// ref: processing_florence2.py: tasks_answer_post_processing_type, task_prompts_without_inputs,
// task_prompts_with_input.
const std::vector<TaskEntry>& entries() {
  static const std::vector<TaskEntry> e = {
      {"<OCR>", "pure_text", "What is the text in the image?", false},
      {"<OCR_WITH_REGION>", "ocr", "What is the text in the image, with regions?", false},
      {"<CAPTION>", "pure_text", "What does the image describe?", false},
      {"<DETAILED_CAPTION>", "pure_text", "Describe in detail what is shown in the image.", false},
      {"<MORE_DETAILED_CAPTION>", "pure_text", "Describe with a paragraph what is shown in the image.", false},
      {"<OD>", "description_with_bboxes", "Locate the objects with category name in the image.", false},
      {"<DENSE_REGION_CAPTION>", "description_with_bboxes", "Locate the objects in the image, with their descriptions.", false},
      {"<CAPTION_TO_PHRASE_GROUNDING>", "phrase_grounding", "Locate the phrases in the caption: {input}", true},
      {"<REFERRING_EXPRESSION_SEGMENTATION>", "polygons", "Locate {input} in the image with mask", true},
      {"<REGION_TO_SEGMENTATION>", "polygons", "What is the polygon mask of region {input}", true},
      {"<OPEN_VOCABULARY_DETECTION>", "description_with_bboxes_or_polygons", "Locate {input} in the image.", true},
      {"<REGION_TO_CATEGORY>", "pure_text", "What is the region {input}?", true},
      {"<REGION_TO_DESCRIPTION>", "pure_text", "What does the region {input} describe?", true},
      {"<REGION_TO_OCR>", "pure_text", "What text is in the region {input}?", true},
      {"<REGION_PROPOSAL>", "bboxes", "Locate the region proposals in the image.", false},
  };
  return e;
}

// The order _construct_prompts tries them in: the fixed prompts' dict, then the templates'.
const std::vector<const TaskEntry*>& prompt_order() {
  static const std::vector<const TaskEntry*> order = [] {
    std::vector<const TaskEntry*> o;
    for (const char* n : {"<OCR>", "<OCR_WITH_REGION>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>",
                          "<OD>", "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>", "<CAPTION_TO_PHRASE_GROUNDING>",
                          "<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>",
                          "<OPEN_VOCABULARY_DETECTION>", "<REGION_TO_CATEGORY>", "<REGION_TO_DESCRIPTION>",
                          "<REGION_TO_OCR>"})
      for (const auto& e : entries())
        if (std::string_view(e.name) == n) o.push_back(&e);
    return o;
  }();
  return order;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}

void replace_first(std::string& s, std::string_view from) {
  if (auto pos = s.find(from); pos != std::string::npos) s.erase(pos, from.size());
}

// Python's str.strip() for the ASCII whitespace the model's text holds.
std::string strip(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// phrase.encode('ascii', errors='ignore').decode('ascii')
std::string ascii_only(const std::string& s) {
  std::string out;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x80) out.push_back(c);
  return out;
}

// ref: BoxQuantizer / CoordinatesQuantizer.dequantize, mode 'floor', 1000 bins: (bin + 0.5) *
// (size / bins), computed as torch does it on an int64 tensor: float32 values times the float32
// rounding of the Python float size / bins.
// transformers' dequantize then casts to int32 (.int(): toward zero).
float dequantize(long long bin, std::int64_t size, bool native) {
  const float per_bin = static_cast<float>(static_cast<double>(size) / 1000.0);
  const float v = static_cast<float>(static_cast<double>(bin) + 0.5) * per_bin;
  return native ? static_cast<float>(static_cast<std::int32_t>(v)) : v;
}

void dequantized_box(const std::smatch& m, std::int64_t w, std::int64_t h, bool native, std::vector<float>& points) {
  for (int j = 0; j < 4; ++j) points.push_back(dequantize(std::stoll(m[j + 1].str()), j % 2 == 0 ? w : h, native));
}

const std::regex& phrase_regex() {
  static const std::regex r(R"(^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_))");
  return r;
}
const std::regex& box_regex() {
  static const std::regex r(R"(<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>)");
  return r;
}

std::string remove_markers(std::string text) {
  replace_all(text, "<s>", "");
  replace_all(text, "</s>", "");
  replace_all(text, "<pad>", "");
  return text;
}

std::vector<std::string> find_all(const std::string& text, const std::regex& r, int group) {
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), r); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[group].str());
  return out;
}

struct Labeled {
  std::string label;
  std::vector<std::vector<float>> shapes;  // boxes (4 values) or polygons
};

// ref: parse_description_with_bboxes_from_text_and_spans (no scores: text input).
std::vector<Labeled> parse_bboxes(const std::string& raw, std::int64_t w, std::int64_t h, bool allow_empty_phrase,
                                  bool native) {
  const std::string text = remove_markers(raw);
  static const std::regex with_phrase(R"(([^<]+(?:<loc_\d+>){4,}))");
  static const std::regex empty_phrase(R"((?:(?:<loc_\d+>){4,}))");
  std::vector<Labeled> out;
  for (std::string phrase_text : find_all(text, allow_empty_phrase ? empty_phrase : with_phrase, 0)) {
    // The hub's code removes <ground> into a copy it then overwrites: only <obj> goes; native
    // removes both from the phrase text itself.
    std::string stripped = phrase_text;
    if (native) replace_first(stripped, "<ground>");
    replace_first(stripped, "<obj>");
    if (native) phrase_text = stripped;
    if (stripped.empty() && !allow_empty_phrase) continue;
    std::smatch pm;
    if (!std::regex_search(stripped, pm, phrase_regex())) continue;
    const std::string phrase = strip(pm[0].str());
    Labeled l;
    l.label = ascii_only(phrase);
    for (auto it = std::sregex_iterator(phrase_text.begin(), phrase_text.end(), box_regex());
         it != std::sregex_iterator(); ++it) {
      std::vector<float> pts;
      dequantized_box(*it, w, h, native, pts);
      l.shapes.push_back(std::move(pts));
    }
    if (l.shapes.empty()) continue;
    out.push_back(std::move(l));
  }
  return out;
}

const std::set<std::string>& grounding_black_list() {
  // ref: _create_black_list_of_phrase_grounding.
  static const std::set<std::string> s = {
      "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "they", "them",
      "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "its", "myself", "yourself", "himself",
      "herself", "itself", "ourselves", "yourselves", "themselves", "this", "that", "these", "those", "who",
      "whom", "whose", "which", "what", "all", "another", "any", "anybody", "anyone", "anything", "each",
      "everybody", "everyone", "everything", "few", "many", "nobody", "none", "several", "some", "somebody",
      "someone", "something", "each other", "one another", "the image", "image", "images", "the", "a", "an",
      "a group", "other objects", "lots", "a set"};
  return s;
}

// ref: parse_phrase_grounding_from_text_and_spans.
std::vector<Labeled> parse_grounding(const std::string& raw, std::int64_t w, std::int64_t h,
                                     const PostProcessFlavor& flavor) {
  const bool native = flavor.native;
  const std::string text = remove_markers(raw);
  static const std::regex phrases(R"(([^<]+(?:<loc_\d+>){4,}))");
  const std::set<std::string> banned(flavor.banned_grounding_tokens.begin(), flavor.banned_grounding_tokens.end());
  std::vector<Labeled> out;
  for (std::string phrase_text : find_all(text, phrases, 0)) {
    std::string stripped = phrase_text;
    if (native) replace_first(stripped, "<ground>");
    replace_first(stripped, "<obj>");
    if (native) phrase_text = stripped;
    if (stripped.empty()) continue;
    std::smatch pm;
    if (!std::regex_search(stripped, pm, phrase_regex())) continue;
    const std::string phrase = strip(pm[0].str());
    // native checks its ban list before looking for boxes, the hub's code after: same outcome.
    if ((native ? banned : grounding_black_list()).count(phrase)) continue;
    Labeled l;
    for (auto it = std::sregex_iterator(phrase_text.begin(), phrase_text.end(), box_regex());
         it != std::sregex_iterator(); ++it) {
      std::vector<float> pts;
      dequantized_box(*it, w, h, native, pts);
      l.shapes.push_back(std::move(pts));
    }
    if (l.shapes.empty()) continue;
    l.label = ascii_only(phrase);
    out.push_back(std::move(l));
  }
  return out;
}

// ref: parse_description_with_polygons_from_text_and_spans (with_box_at_start false).
std::vector<Labeled> parse_polygons(const std::string& raw, std::int64_t w, std::int64_t h, bool allow_empty_phrase,
                                    bool native) {
  const std::string text = remove_markers(raw);
  static const std::regex with_phrase(R"(([^<]+(?:<loc_\d+>|<sep>|<poly>|</poly>){4,}))");
  static const std::regex empty_phrase(R"((?:(?:<loc_\d+>|<sep>|<poly>|</poly>){4,}))");
  static const std::regex phrase_string(R"(^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>))");
  static const std::regex box_pattern(R"(((?:<loc_\d+>)+)(?:<sep>|$))");
  static const std::regex instance_pattern(R"(<poly>(.*?)</poly>)");
  static const std::regex leading_loc(R"(^loc_\d+>)");         // the hub's (never matches: no '<')
  static const std::regex leading_loc_native(R"(^<loc_\d+>)");
  static const std::regex loc(R"(<loc_(\d+)>)");
  std::vector<Labeled> out;
  for (const std::string& phrase_text : find_all(text, allow_empty_phrase ? empty_phrase : with_phrase, 0)) {
    const std::string stripped = std::regex_replace(phrase_text, native ? leading_loc_native : leading_loc, "",
                                                    std::regex_constants::format_first_only);
    if (stripped.empty() && !allow_empty_phrase) continue;
    std::smatch pm;
    if (!std::regex_search(stripped, pm, phrase_string)) continue;
    const std::string phrase = strip(pm[0].str());
    std::vector<std::string> instances;
    if (phrase_text.find("<poly>") != std::string::npos && phrase_text.find("</poly>") != std::string::npos)
      instances = find_all(phrase_text, instance_pattern, 1);
    else
      instances = {phrase_text};
    for (const std::string& inst : instances) {
      Labeled l;
      l.label = phrase;
      for (const std::string& polygon : find_all(inst, box_pattern, 1)) {
        std::vector<long long> bins;
        for (const std::string& b : find_all(polygon, loc, 1)) bins.push_back(std::stoll(b));
        if (bins.size() % 2 == 1) bins.pop_back();  // an unpaired last value is dropped
        std::vector<float> pts;
        for (std::size_t i = 0; i < bins.size(); ++i) pts.push_back(dequantize(bins[i], i % 2 == 0 ? w : h, native));
        l.shapes.push_back(std::move(pts));
      }
      if (l.shapes.empty()) continue;
      out.push_back(std::move(l));
    }
  }
  return out;
}

// Coordinates as .tolist() gives them: Python floats of the float32 values, or ints (native).
ojson floats(const std::vector<float>& v, bool native) {
  ojson a = ojson::array();
  for (float f : v) {
    if (native)
      a.push_back(static_cast<std::int64_t>(f));
    else
      a.push_back(static_cast<double>(f));
  }
  return a;
}

}  // namespace

const std::vector<std::string>& added_tokens() {
  static const std::vector<std::string> t = [] {
    std::vector<std::string> v = {"<od>", "</od>", "<ocr>", "</ocr>"};
    for (int i = 0; i < 1000; ++i) v.push_back(fmt::format("<loc_{}>", i));
    for (const char* s : {"<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
                          "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
                          "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"})
      v.push_back(s);
    return v;
  }();
  return t;
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& e : entries()) v.push_back(e.name);
    return v;
  }();
  return n;
}

std::string answer_type(std::string_view task) {
  for (const auto& e : entries())
    if (task == e.name) return e.answer;
  return "pure_text";  // ref: tasks_answer_post_processing_type.get(task, 'pure_text')
}

bool takes_input(std::string_view task) {
  for (const auto& e : entries())
    if (task == e.name) return e.input;
  return false;
}

std::string construct_prompt(std::string_view task, const std::optional<std::string>& text, bool native) {
  // ref: _construct_prompts on the model card's prompt = task + text_input.
  std::string prompt = std::string(task) + text.value_or("");
  for (const TaskEntry* e : prompt_order()) {
    if (e->input || prompt.find(e->name) == std::string::npos) continue;
    if (prompt != e->name)
      throw InputError(fmt::format("task {} takes no --text (the processor requires the task token alone), got '{}'",
                                   e->name, prompt));
    prompt = e->prompt;
    break;
  }
  for (const TaskEntry* e : prompt_order()) {
    if (!e->input || prompt.find(e->name) == std::string::npos) continue;
    std::string input = prompt;
    replace_all(input, e->name, "");
    if (native) input = strip(input);
    prompt = e->prompt;
    replace_all(prompt, "{input}", input);
    break;
  }
  return prompt;
}

TaskResult post_process(const std::string& task, const std::string& text, std::int64_t w, std::int64_t h,
                        const PostProcessFlavor& flavor) {
  const bool native = flavor.native;
  TaskResult r;
  r.task = task;
  r.text = text;
  const std::string type = answer_type(task);
  ojson answer;
  auto add_shapes = [&](const std::vector<Labeled>& items, TaskShape::Kind kind) {
    for (const auto& l : items)
      for (const auto& s : l.shapes) r.shapes.push_back({kind, l.label, s});
  };
  if (type == "pure_text") {
    std::string t = text;
    replace_all(t, "<s>", "");
    replace_all(t, "</s>", "");
    answer = native ? strip(t) : t;
  } else if (type == "description_with_bboxes" || type == "bboxes" || type == "phrase_grounding") {
    const std::vector<Labeled> items = type == "phrase_grounding" ? parse_grounding(text, w, h, flavor)
                                                                  : parse_bboxes(text, w, h, type == "bboxes", native);
    ojson boxes = ojson::array(), labels = ojson::array();
    for (const auto& l : items)
      for (const auto& s : l.shapes) {
        boxes.push_back(floats(s, native));
        labels.push_back(l.label);
      }
    answer = {{"bboxes", boxes}, {"labels", labels}};
    add_shapes(items, TaskShape::Kind::Box);
  } else if (type == "ocr") {
    // ref: parse_ocr_from_text_and_spans: the hub's code removes only <s>, so the first label
    // keeps the decoder start token's "</s>"; native removes the markers and strips labels.
    std::string t = native ? remove_markers(text) : text;
    replace_all(t, "<s>", "");
    static const std::regex ocr(
        R"((.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>)");
    ojson quads = ojson::array(), labels = ojson::array();
    for (auto it = std::sregex_iterator(t.begin(), t.end(), ocr); it != std::sregex_iterator(); ++it) {
      std::vector<float> q;
      for (int j = 0; j < 8; ++j) q.push_back(dequantize(std::stoll((*it)[j + 2].str()), j % 2 == 0 ? w : h, native));
      const std::string label = native ? strip((*it)[1].str()) : (*it)[1].str();
      quads.push_back(floats(q, native));
      labels.push_back(label);
      r.shapes.push_back({TaskShape::Kind::Quad, label, q});
    }
    answer = {{"quad_boxes", quads}, {"labels", labels}};
  } else if (type == "polygons") {
    const std::vector<Labeled> items = parse_polygons(text, w, h, /*allow_empty_phrase=*/true, native);
    ojson polygons = ojson::array(), labels = ojson::array();
    for (const auto& l : items) {
      ojson p = ojson::array();
      for (const auto& s : l.shapes) p.push_back(floats(s, native));
      polygons.push_back(p);
      labels.push_back(l.label);
    }
    answer = {{"polygons", polygons}, {"labels", labels}};
    add_shapes(items, TaskShape::Kind::Polygon);
  } else {  // description_with_bboxes_or_polygons
    ojson boxes = ojson::array(), box_labels = ojson::array(), polygons = ojson::array(), poly_labels = ojson::array();
    if (text.find("<poly>") != std::string::npos) {
      const std::vector<Labeled> items = parse_polygons(text, w, h, false, native);
      for (const auto& l : items) {
        ojson p = ojson::array();
        for (const auto& s : l.shapes) p.push_back(floats(s, native));
        polygons.push_back(p);
        poly_labels.push_back(l.label);
      }
      add_shapes(items, TaskShape::Kind::Polygon);
    } else {
      const std::vector<Labeled> items = parse_bboxes(text, w, h, false, native);
      for (const auto& l : items)
        for (const auto& s : l.shapes) {
          boxes.push_back(floats(s, native));
          box_labels.push_back(l.label);
        }
      add_shapes(items, TaskShape::Kind::Box);
    }
    answer = {{"bboxes", boxes}, {"bboxes_labels", box_labels}, {"polygons", polygons}, {"polygons_labels", poly_labels}};
  }
  ojson out = ojson::object();
  out[task] = answer;
  r.json = out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return r;
}

}  // namespace xcaption::florence2
