// How often --dtype bf16 gives the same caption as float32, on rendered shapes-world scenes (the
// default model's evaluation distribution). Not built by default: from the repo root,
//   cmake --build build --target bf16_agreement      (or --target bench for all benchmarks)
//   build/bf16_agreement [MODEL_DIR] [COUNT=1000] [SEED=2026] [BEAMS=model default]
// Prints the number of scenes, identical captions, and the first differing captions.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <xcaption/captioner.hpp>
#include <xcaption/scenes.hpp>

int main(int argc, char** argv) {
  using namespace xcaption;
  const std::filesystem::path dir = argc > 1 ? std::filesystem::path(argv[1]) : default_model_dir();
  const std::int64_t count = argc > 2 ? std::atoll(argv[2]) : 1000;
  const std::uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 2026;
  CaptionRequest request;
  if (argc > 4) request.generation.num_beams = std::atoll(argv[4]);
  try {
    LoadOptions f32, bf16;
    bf16.dtype = ComputeType::BF16;
    Captioner a = Captioner::load(dir, f32), b = Captioner::load(dir, bf16);
    scenes::RenderOptions options;
    options.seed = seed;
    std::int64_t same = 0, same_tokens = 0, shown = 0;
    for (std::int64_t i = 0; i < count; ++i) {
      scenes::SceneImage pixels;
      scenes::make_scene(options, i, &pixels);
      RgbImage image;
      image.width = pixels.width;
      image.height = pixels.height;
      image.data.resize(pixels.bgr.size());
      for (std::size_t p = 0; p < pixels.bgr.size(); p += 3) {
        image.data[p] = pixels.bgr[p + 2];
        image.data[p + 1] = pixels.bgr[p + 1];
        image.data[p + 2] = pixels.bgr[p];
      }
      const CaptionResult ra = a.caption(image, request), rb = b.caption(image, request);
      same += ra.caption == rb.caption;
      same_tokens += ra.token_ids == rb.token_ids;
      if (ra.caption != rb.caption && shown++ < 10)
        std::printf("scene %lld: f32 '%s' | bf16 '%s'\n", static_cast<long long>(i), ra.caption.c_str(),
                    rb.caption.c_str());
    }
    std::printf("%s: %lld scenes of seed %llu, beams %s: same caption %lld (%.2f%%), same tokens %lld\n",
                dir.string().c_str(), static_cast<long long>(count), static_cast<unsigned long long>(seed),
                argc > 4 ? argv[4] : "default", static_cast<long long>(same), 100.0 * same / count,
                static_cast<long long>(same_tokens));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bf16_agreement: %s\n", e.what());
    return 1;
  }
}
