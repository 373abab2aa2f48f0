// The JSON object of one caption result: what `xcaption caption --json` prints per image and what
// `xcaption serve` answers for `/caption?details=true` (one function, so the two cannot drift).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include <xcaption/captioner.hpp>

namespace xcaption {

/// {"image", "caption", "prompt_ids", "token_ids", "tokens", "logprobs", "sequence_score",
///  "num_beams", "timings_ms": {"preprocess", "encoder", "cross_kv", "decode"}}, and for a task
/// model "task", "text" (special tokens kept) and "result" ({task: answer} as transformers'
/// post_process_generation returns it).
nlohmann::json caption_result_json(const std::string& image, const CaptionResult& result);

/// For a task model's result: "task", "text" (special tokens kept) and "result" (the structured
/// answer) on `j`; nothing otherwise. One definition for caption --json, attend --json and the
/// server's answers (nlohmann::json or ordered_json).
template <class Json>
void put_task_fields(Json& j, const CaptionResult& r) {
  if (!r.task) return;
  j["task"] = r.task->task;
  j["text"] = r.task->text;
  j["result"] = Json::parse(r.task->json);
}

/// What a caption line shows: the caption, or a task's answer (its text when the answer is text,
/// else the answer as compact JSON).
std::string display_text(const CaptionResult& result);

}  // namespace xcaption
