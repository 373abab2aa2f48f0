#include "encoders/davit.hpp"

#include <xcaption/errors.hpp>

namespace xcaption {

struct Florence2VisionTower::Impl {};

std::int64_t Florence2VisionSpec::grid() const { throw InputError("Florence-2 vision tower: not implemented yet"); }
std::int64_t Florence2VisionSpec::num_tokens() const { throw InputError("Florence-2 vision tower: not implemented yet"); }

Florence2VisionSpec florence2_vision_spec(const config::Node&, Florence2Layout) {
  throw InputError("Florence-2 vision tower: not implemented yet");
}
Florence2VisionSpec florence2_vision_spec(const nlohmann::json&, Florence2Layout, const std::string&) {
  throw InputError("Florence-2 vision tower: not implemented yet");
}
std::vector<ExpectedTensor> describe(const Florence2VisionSpec&) {
  throw InputError("Florence-2 vision tower: not implemented yet");
}
void describe(const Florence2VisionSpec&, std::vector<ExpectedTensor>&) {
  throw InputError("Florence-2 vision tower: not implemented yet");
}
Florence2VisionTower::Florence2VisionTower(const Florence2VisionSpec& spec, const WeightStore&, Backend&) : spec_(spec) {
  throw InputError("Florence-2 vision tower: not implemented yet");
}
Florence2VisionTower::~Florence2VisionTower() = default;
TokenGrid Florence2VisionTower::grid() const { return {}; }
void Florence2VisionTower::forward(const float*, std::int64_t, float*) {}
double Florence2VisionTower::flops() const { return 0; }
std::string Florence2VisionTower::describe() const { return {}; }
std::int64_t Florence2VisionTower::num_layers() const { return 0; }
std::int64_t Florence2VisionTower::num_heads() const { return 0; }
std::int64_t Florence2VisionTower::patch_size() const { return 0; }
const float* Florence2VisionTower::backbone_states() const { return nullptr; }

}  // namespace xcaption
