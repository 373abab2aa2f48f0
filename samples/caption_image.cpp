// Caption one image with the public API.
//   sample_caption_image MODEL_DIR IMAGE
#include <cstdio>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: sample_caption_image MODEL_DIR IMAGE\n");
    return 2;
  }
  try {
    // Load the model folder; every tensor is checked against the config.
    xcaption::Captioner captioner = xcaption::Captioner::load(argv[1]);
    // Decode the image to RGB (EXIF orientation applied, alpha dropped).
    const xcaption::RgbImage image = xcaption::load_image(argv[2]);
    // Caption it with the folder's own generation settings (generation_config.json).
    const xcaption::CaptionResult result = captioner.caption(image);
    // Print the caption, then each generated token with its log-probability.
    std::printf("caption: %s\ntokens: %zu\n", result.caption.c_str(), result.token_ids.size());
    for (std::size_t i = 0; i < result.token_ids.size(); ++i)
      std::printf("  %-12s id %-6lld log-prob %.3f\n", result.tokens[i].c_str(),
                  static_cast<long long>(result.token_ids[i]), result.logprobs[i]);
    return 0;
  } catch (const xcaption::Error& e) {
    // Library errors are typed and carry a complete message.
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
