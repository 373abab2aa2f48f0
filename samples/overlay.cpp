// Show where each word of a caption looked: one panel per word, blended over the image.
//   sample_overlay MODEL_DIR IMAGE OUT.png
#include <cstdio>

#include <xcaption/captioner.hpp>
#include <xcaption/errors.hpp>
#include <xcaption/viz.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sample_overlay MODEL_DIR IMAGE OUT.png\n");
    return 2;
  }
  try {
    xcaption::Captioner captioner = xcaption::Captioner::load(argv[1]);
    const xcaption::RgbImage image = xcaption::load_image(argv[2]);
    // Ask the decoder to keep its cross-attention weights for every generated token.
    xcaption::CaptionRequest request;
    request.capture_cross_attention = true;
    const xcaption::CaptionResult result = captioner.caption(image, request);
    // Reduce them to one patch-grid map per token: mean over layers and heads, CLS dropped.
    const auto tokens = xcaption::viz::token_attentions(captioner, result);
    // Start the grid with the original image, then one overlay per word (end of text skipped).
    std::vector<xcaption::viz::Panel> panels{{image, "(image)"}};
    for (const auto& t : tokens)
      if (!t.special) panels.push_back({xcaption::viz::overlay(image, t.map), t.word});
    // Lay the panels out under the caption and write the PNG atomically.
    xcaption::viz::PanelGridOptions grid;
    grid.title = result.caption;
    const xcaption::RgbImage sheet = xcaption::viz::panel_grid(panels, grid);
    xcaption::viz::write_png(argv[3], sheet);
    std::printf("caption: %s\nwrote %s (%dx%d, %zu panels)\n", result.caption.c_str(), argv[3], sheet.width,
                sheet.height, panels.size());
    return 0;
  } catch (const xcaption::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
