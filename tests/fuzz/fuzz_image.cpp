// libFuzzer target for image input. The first byte picks the mode:
//  - even: the rest is an image file, decoded by decode_image (header probe and pixel cap,
//    truncation checks, OpenCV's decoders) and, when it decodes, preprocessed for a 32x32 model
//    with a PIL filter taken from the input;
//  - odd: an RGB image of a size taken from the input (1..300 x 1..300, pixels from the input) is
//    resized by pil_resize to another such size with each PIL filter, the path every decoded
//    image of arbitrary size takes. The output must have the requested size.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <xcaption/errors.hpp>
#include <xcaption/image.hpp>

#include "encoders/image_processor.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xcaption;
  fuzz::Bytes in(data, size);
  const std::uint8_t mode = in.u8();
  if ((mode & 1) == 0) {
    const std::string_view file = in.rest();
    ImageLimits limits;
    limits.max_pixels = 1 << 22;  // a decoded image of at most 12 MB, so a run stays fast
    try {
      const RgbImage image = decode_image({reinterpret_cast<const std::uint8_t*>(file.data()), file.size()},
                                          "fuzz.img", limits);
      if (image.width < 1 || image.height < 1 ||
          image.data.size() != static_cast<std::size_t>(image.width) * image.height * 3)
        std::abort();
      PreprocessorConfig c;
      c.height = c.width = 32;
      c.resample = (mode >> 1) % 6;
      std::vector<float> pixels(3 * 32 * 32);
      preprocess_image(image, c, pixels.data());
    } catch (const Error&) {
    }
    return 0;
  }
  RgbImage src;
  src.width = in.range(1, 300);
  src.height = in.range(1, 300);
  const int out_w = in.range(1, 300), out_h = in.range(1, 300);
  src.data.resize(static_cast<std::size_t>(src.width) * src.height * 3);
  const std::string_view pixels = in.rest();
  for (std::size_t i = 0; i < src.data.size(); ++i)
    src.data[i] = pixels.empty() ? 0 : static_cast<std::uint8_t>(pixels[i % pixels.size()]);
  for (int resample = 0; resample <= 5; ++resample) {
    const RgbImage out = pil_resize(src, out_w, out_h, resample);
    if (out.width != out_w || out.height != out_h || out.data.size() != static_cast<std::size_t>(out_w) * out_h * 3) {
      std::fprintf(stderr, "fuzz_image: pil_resize %dx%d -> %dx%d (filter %d) gave %dx%d\n", src.width, src.height,
                   out_w, out_h, resample, out.width, out.height);
      std::abort();
    }
  }
  return 0;
}
