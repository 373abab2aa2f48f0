#include "src/io/result_json.hpp"

namespace xcaption {

nlohmann::json caption_result_json(const std::string& image, const CaptionResult& r) {
  nlohmann::json j;
  j["image"] = image;
  j["caption"] = r.caption;
  j["prompt_ids"] = r.prompt_ids;
  j["token_ids"] = r.token_ids;
  j["tokens"] = r.tokens;
  j["logprobs"] = r.logprobs;
  j["sequence_score"] = r.sequence_score;
  j["num_beams"] = r.num_beams;
  j["timings_ms"] = {{"preprocess", r.timings.preprocess_ms},
                     {"encoder", r.timings.encoder_ms},
                     {"cross_kv", r.timings.cross_kv_ms},
                     {"decode", r.timings.decode_ms}};
  put_task_fields(j, r);
  return j;
}

std::string display_text(const CaptionResult& r) {
  if (!r.task) return r.caption;
  const nlohmann::json result = nlohmann::json::parse(r.task->json);
  const nlohmann::json& answer = result.at(r.task->task);
  return answer.is_string() ? answer.get<std::string>() : answer.dump();
}

}  // namespace xcaption
