// Florence-2's tasks without a model: the processor's added tokens and prompts, and
// post_process_generation of crafted texts against values worked out from processing_florence2.py
// by hand (bins dequantised as (bin + 0.5) * size / 1000 in float32).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>

#include "models/florence2/tasks.hpp"
#include "src/tokenizer/tokenizer.hpp"

using namespace xcaption;
using nlohmann::json;

namespace {
// What torch gives for one coordinate: float32(bin + 0.5) * float32(size / 1000).
double coord(int bin, int size) {
  return static_cast<double>(static_cast<float>(bin + 0.5) * static_cast<float>(size / 1000.0));
}
json answer(const TaskResult& r) { return json::parse(r.json).at(r.task); }
const florence2::PostProcessFlavor kRemote{false, {}};
const florence2::PostProcessFlavor kNative{true, {}};
}  // namespace

TEST_CASE("florence2: the processor's 1,024 added tokens in its order", "[florence2]") {
  const auto& t = florence2::added_tokens();
  REQUIRE(t.size() == 1024);
  CHECK(t[0] == "<od>");
  CHECK(t[3] == "</ocr>");
  CHECK(t[4] == "<loc_0>");
  CHECK(t[1003] == "<loc_999>");
  CHECK(t[1004] == "<cap>");
  CHECK(t[1017] == "<region_to_desciption>");  // the processor's spelling
  CHECK(t.back() == "<and>");
}

TEST_CASE("florence2: added tokens take the next ids, are special and match inside text", "[florence2]") {
  const std::string dir = std::string(XCAPTION_TEST_DATA) + "/tiny-florence2-remote";
  const Tokenizer plain = Tokenizer::load(dir);
  const Tokenizer t = Tokenizer::load(dir, florence2::added_tokens());
  const std::int64_t base = plain.vocab_size();
  CHECK(t.vocab_size() == base + 1024);
  CHECK(*t.token_id("<od>") == base);
  CHECK(*t.token_id("<loc_7>") == base + 4 + 7);
  CHECK(*t.token_id("<and>") == base + 1023);
  CHECK(t.is_special(base + 11));
  const std::vector<std::int64_t> ids = t.encode("a<loc_1><loc_2>b");
  REQUIRE(ids.size() >= 4);
  CHECK(ids[1] == base + 5);
  CHECK(ids[2] == base + 6);
  CHECK(t.decode(ids, /*skip_special_tokens=*/true) == "ab");
  CHECK(t.decode(ids, false) == "a<loc_1><loc_2>b");
  // Already present: kept where it is (the second load adds nothing new).
  const std::vector<std::string> again{"<od>", "<new>"};
  CHECK(Tokenizer::load(dir, again).vocab_size() == base + 2);
}

TEST_CASE("florence2: task prompts as _construct_prompts builds them", "[florence2]") {
  using florence2::construct_prompt;
  CHECK(construct_prompt("<CAPTION>", std::nullopt, false) == "What does the image describe?");
  CHECK(construct_prompt("<DETAILED_CAPTION>", std::nullopt, false) == "Describe in detail what is shown in the image.");
  CHECK(construct_prompt("<MORE_DETAILED_CAPTION>", std::nullopt, false) ==
        "Describe with a paragraph what is shown in the image.");
  CHECK(construct_prompt("<OCR>", std::nullopt, false) == "What is the text in the image?");
  CHECK(construct_prompt("<OCR_WITH_REGION>", std::nullopt, false) == "What is the text in the image, with regions?");
  CHECK(construct_prompt("<OD>", std::nullopt, false) == "Locate the objects with category name in the image.");
  CHECK(construct_prompt("<DENSE_REGION_CAPTION>", std::nullopt, false) ==
        "Locate the objects in the image, with their descriptions.");
  CHECK(construct_prompt("<REGION_PROPOSAL>", std::nullopt, false) == "Locate the region proposals in the image.");
  CHECK(construct_prompt("<CAPTION_TO_PHRASE_GROUNDING>", "A green car", false) ==
        "Locate the phrases in the caption: A green car");
  CHECK(construct_prompt("<REFERRING_EXPRESSION_SEGMENTATION>", "the car", false) == "Locate the car in the image with mask");
  CHECK(construct_prompt("<REGION_TO_CATEGORY>", "<loc_1><loc_2><loc_3><loc_4>", false) ==
        "What is the region <loc_1><loc_2><loc_3><loc_4>?");
  CHECK(construct_prompt("<OPEN_VOCABULARY_DETECTION>", "car", false) == "Locate car in the image.");
  // The remote processor keeps the input's spaces; transformers' strips them.
  CHECK(construct_prompt("<CAPTION_TO_PHRASE_GROUNDING>", " a car ", false) == "Locate the phrases in the caption:  a car ");
  CHECK(construct_prompt("<CAPTION_TO_PHRASE_GROUNDING>", " a car ", true) == "Locate the phrases in the caption: a car");
  CHECK(construct_prompt("<CAPTION_TO_PHRASE_GROUNDING>", std::nullopt, false) == "Locate the phrases in the caption: ");
  // A task without an input must stand alone.
  CHECK_THROWS_AS(construct_prompt("<CAPTION>", "extra", false), InputError);
  CHECK(florence2::task_names().size() == 15);
  CHECK(florence2::takes_input("<REGION_TO_OCR>"));
  CHECK_FALSE(florence2::takes_input("<OD>"));
}

TEST_CASE("florence2: pure text drops <s> and </s> only", "[florence2]") {
  const TaskResult r = florence2::post_process("<CAPTION>", "</s><s>A green car.</s>", 640, 480, kRemote);
  CHECK(answer(r) == "A green car.");
  CHECK(r.shapes.empty());
  CHECK(r.text == "</s><s>A green car.</s>");
  CHECK(answer(florence2::post_process("<OCR>", "</s><s> HELLO </s>", 10, 10, kNative)) == "HELLO");  // native strips
}

TEST_CASE("florence2: <OD> boxes in pixels of the original image with their labels", "[florence2]") {
  const std::string text = "</s><s>car<loc_52><loc_333><loc_932><loc_774>wheel<loc_121><loc_600><loc_244><loc_771>"
                           "<loc_700><loc_600><loc_820><loc_770></s>";
  const TaskResult r = florence2::post_process("<OD>", text, 1280, 853, kRemote);
  const json a = answer(r);
  REQUIRE(a.at("bboxes").size() == 3);
  CHECK(a.at("labels") == json({"car", "wheel", "wheel"}));
  const json& b = a.at("bboxes")[0];
  CHECK(b[0].get<double>() == coord(52, 1280));
  CHECK(b[1].get<double>() == coord(333, 853));
  CHECK(b[2].get<double>() == coord(932, 1280));
  CHECK(b[3].get<double>() == coord(774, 853));
  CHECK(a.at("bboxes")[2][0].get<double>() == coord(700, 1280));
  REQUIRE(r.shapes.size() == 3);
  CHECK(r.shapes[1].kind == TaskShape::Kind::Box);
  CHECK(r.shapes[1].label == "wheel");
  CHECK(r.shapes[1].points[0] == static_cast<float>(coord(121, 1280)));
  // The JSON keeps the processor's key order.
  CHECK(r.json.find("\"bboxes\"") < r.json.find("\"labels\""));
}

TEST_CASE("florence2: <OCR_WITH_REGION> quads keep the start token in the first label", "[florence2]") {
  const std::string text = "</s><s>HELLO<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>"
                           "WORLD<loc_10><loc_20><loc_30><loc_40><loc_50><loc_60><loc_70><loc_80></s>";
  const TaskResult r = florence2::post_process("<OCR_WITH_REGION>", text, 500, 300, kRemote);
  const json a = answer(r);
  // ref: parse_ocr_from_text_and_spans removes only "<s>".
  CHECK(a.at("labels") == json({"</s>HELLO", "WORLD"}));
  REQUIRE(a.at("quad_boxes").size() == 2);
  CHECK(a.at("quad_boxes")[1][0].get<double>() == coord(10, 500));
  CHECK(a.at("quad_boxes")[1][1].get<double>() == coord(20, 300));
  CHECK(a.at("quad_boxes")[1][7].get<double>() == coord(80, 300));
  REQUIRE(r.shapes.size() == 2);
  CHECK(r.shapes[0].kind == TaskShape::Kind::Quad);
  CHECK(r.shapes[0].points.size() == 8);
}

TEST_CASE("florence2: phrase grounding drops black-listed phrases and keeps several boxes", "[florence2]") {
  const std::string text = "</s><s>A green car<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>"
                           "it<loc_9><loc_9><loc_9><loc_9>a yellow building<loc_100><loc_100><loc_200><loc_200></s>";
  const json a = answer(florence2::post_process("<CAPTION_TO_PHRASE_GROUNDING>", text, 1000, 1000, kRemote));
  CHECK(a.at("labels") == json({"A green car", "A green car", "a yellow building"}));
  REQUIRE(a.at("bboxes").size() == 3);
  CHECK(a.at("bboxes")[1][0].get<double>() == coord(5, 1000));
}

TEST_CASE("florence2: region proposals have empty labels, polygons pair coordinates", "[florence2]") {
  const json p = answer(florence2::post_process(
      "<REGION_PROPOSAL>", "</s><s><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8></s>", 100, 200, kRemote));
  CHECK(p.at("labels") == json({"", ""}));
  CHECK(p.at("bboxes")[1][3].get<double>() == coord(8, 200));

  // Two polygons of one instance separated by <sep>; an odd trailing value is dropped.
  const std::string seg = "</s><s><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><sep><loc_7><loc_8><loc_9><loc_10><loc_11></s>";
  const TaskResult r = florence2::post_process("<REFERRING_EXPRESSION_SEGMENTATION>", seg, 100, 200, kRemote);
  const json a = answer(r);
  REQUIRE(a.at("polygons").size() == 1);
  REQUIRE(a.at("polygons")[0].size() == 2);
  CHECK(a.at("polygons")[0][0].size() == 6);
  CHECK(a.at("polygons")[0][1].size() == 4);
  CHECK(a.at("polygons")[0][1][3].get<double>() == coord(10, 200));
  CHECK(a.at("labels") == json({""}));
  REQUIRE(r.shapes.size() == 2);
  CHECK(r.shapes[0].kind == TaskShape::Kind::Polygon);

  // Open-vocabulary detection: boxes without <poly>, polygons with it.
  const json ov = answer(florence2::post_process("<OPEN_VOCABULARY_DETECTION>",
                                                 "</s><s>car<loc_1><loc_2><loc_3><loc_4></s>", 100, 100, kRemote));
  CHECK(ov.at("bboxes_labels") == json({"car"}));
  CHECK(ov.at("polygons").empty());
}
