// Florence-2's tasks (ref: the hub's processing_florence2.py, Florence2Processor and
// Florence2PostProcesser; transformers models/florence2/processing_florence2.py for the native
// layout): the tokens the processor adds to the tokenizer, the task prompts, and the reading of
// generated text into boxes, quadrilaterals, polygons and labels in pixels of the original image.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <xcaption/captioner.hpp>

namespace xcaption::florence2 {

/// The special tokens Florence2Processor.__init__ adds, in its order: <od> </od> <ocr> </ocr>,
/// <loc_0> ... <loc_999>, <cap> ... <and> (1,024 tokens).
const std::vector<std::string>& added_tokens();

/// Every task, in the processor's tasks_answer_post_processing_type order.
const std::vector<std::string>& task_names();

/// How a task's answer is parsed: "pure_text", "ocr", "description_with_bboxes",
/// "phrase_grounding", "polygons", "description_with_bboxes_or_polygons" or "bboxes".
std::string answer_type(std::string_view task);

/// Whether the task takes a text input (<CAPTION_TO_PHRASE_GROUNDING>, <REGION_TO_...>, ...).
bool takes_input(std::string_view task);

/// The processor's _construct_prompts for `task` + `text`: a fixed prompt for tasks without an
/// input, the task's template with the input for the others. `native`: transformers' processor,
/// which strips the input. Throws InputError when a task without an input gets one (the
/// processor's "should be the only token" assertion).
std::string construct_prompt(std::string_view task, const std::optional<std::string>& text, bool native);

/// Which processor's post-processing: the hub's (Florence2PostProcesser) or transformers'
/// (Florence2PostProcessor: integer coordinates, stripped pure text and OCR labels, <ground>
/// removed too, the phrase-grounding ban list from processor_config.json).
struct PostProcessFlavor {
  bool native = false;
  std::vector<std::string> banned_grounding_tokens;  // native only; the hub's list is built in
};

/// post_process_generation(text, task, image_size=(width, height)) as a TaskResult: the JSON
/// {task: answer} and the shapes of the answer. An unknown task is read as pure text.
TaskResult post_process(const std::string& task, const std::string& text, std::int64_t width, std::int64_t height,
                        const PostProcessFlavor& flavor);

}  // namespace xcaption::florence2
