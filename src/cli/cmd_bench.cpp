// xcaption bench: stage timings (medians over repeats after a warm-up), throughput of batches, peak
// memory, and the fraction of the machine's roofline the encoder and the decoder reach.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <xcaption/errors.hpp>
#include <xcaption/perf.hpp>

#include "src/cli/cli.hpp"

namespace xcaption::cli {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A deterministic test card (gradients, a grid and a disc) when no image is given, so that the
// command runs without any file.
RgbImage test_card(int width, int height) {
  RgbImage img;
  img.width = width;
  img.height = height;
  img.data.resize(static_cast<std::size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      auto* p = img.data.data() + (static_cast<std::size_t>(y) * width + x) * 3;
      const int dx = x - width / 2, dy = y - height / 2;
      const bool disc = dx * dx + dy * dy < (height / 4) * (height / 4);
      const bool grid = x % 32 == 0 || y % 32 == 0;
      p[0] = static_cast<std::uint8_t>(disc ? 220 : 255 * x / width);
      p[1] = static_cast<std::uint8_t>(grid ? 0 : 255 * y / height);
      p[2] = static_cast<std::uint8_t>(disc ? 40 : 128);
    }
  return img;
}

struct StageTimes {
  std::vector<double> preprocess, encoder, cross_kv, decode, per_token, total;
  std::int64_t tokens = 0;
};

}  // namespace

int cmd_bench(int argc, char** argv) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help")
      ("image", po::value<std::string>()->value_name("FILE"),
       "image to caption (default: a built-in 640x480 test card)")
      ("beams,b", po::value<std::int64_t>()->default_value(1)->value_name("N"), "beam count (1 = greedy)")
      ("new-tokens", po::value<std::int64_t>()->default_value(16)->value_name("N"),
       "tokens generated per image (end-of-text is suppressed until then, so every run does the same work)")
      ("repeats,r", po::value<int>()->default_value(5)->value_name("N"), "timed runs after one warm-up run")
      ("batch", po::value<std::int64_t>()->default_value(0)->value_name("N"),
       "also caption N images per caption_batch() call and report images/s (0 = skip)")
      ("no-roofline", "skip measuring the matmul peak and the memory bandwidth")
      ("json", "print one JSON object instead of the table");
  add_model_options(options);
  po::positional_options_description positional;
  try {
    const auto vm = parse("bench", argc, argv, options, positional);
    if (vm.count("help")) {
      print_help("xcaption bench [OPTIONS]",
                 "Loads the model, captions one image (after a warm-up run) --repeats times and prints\n"
                 "the median time of each stage: preprocess, encoder, cross-attention K/V, decoding per\n"
                 "token, end to end; images/s for --batch; the model's load time and the process's\n"
                 "peak memory. Then measures this machine's matmul peak (a large oneDNN product in the\n"
                 "same dtype) and read bandwidth, and reports the fraction of them the encoder and a\n"
                 "decoding step reach.",
                 options);
      return kOk;
    }
    const std::int64_t beams = vm["beams"].as<std::int64_t>();
    const std::int64_t new_tokens = vm["new-tokens"].as<std::int64_t>();
    const int repeats = vm["repeats"].as<int>();
    const std::int64_t batch = vm["batch"].as<std::int64_t>();
    if (beams < 1) throw UsageError("bench: --beams must be at least 1");
    if (new_tokens < 1) throw UsageError("bench: --new-tokens must be at least 1");
    if (repeats < 1) throw UsageError("bench: --repeats must be at least 1");
    if (batch < 0) throw UsageError("bench: --batch must be >= 0");
    const bool json_out = vm.count("json") > 0;
    const int threads = vm["threads"].as<int>();

    const auto load_start = Clock::now();
    Captioner captioner = load_captioner(vm);
    const double load_wall_ms = ms_since(load_start);
    const ModelInfo info = captioner.info();
    const RgbImage image = vm.count("image") ? load_image(vm["image"].as<std::string>()) : test_card(640, 480);

    CaptionRequest request;
    request.generation.num_beams = beams;
    request.generation.max_new_tokens = new_tokens;
    request.generation.min_new_tokens = new_tokens;

    StageTimes st;
    CaptionResult last = captioner.caption(image, request);  // warm-up: primitives, buffers
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = Clock::now();
      last = captioner.caption(image, request);
      st.total.push_back(ms_since(t0));
      const auto& t = last.timings;
      st.preprocess.push_back(t.preprocess_ms);
      st.encoder.push_back(t.encoder_ms);
      st.cross_kv.push_back(t.cross_kv_ms);
      st.decode.push_back(t.decode_ms);
      st.tokens = static_cast<std::int64_t>(last.token_ids.size());
      st.per_token.push_back(t.decode_ms / static_cast<double>(std::max<std::int64_t>(st.tokens, 1)));
    }

    double batch_images_per_s = 0, batch_encoder_ms = 0;
    if (batch > 0) {
      const std::vector<RgbImage> images(static_cast<std::size_t>(batch), image);
      captioner.caption_batch(images, request);  // warm-up for this batch size
      std::vector<double> wall, enc;
      for (int i = 0; i < repeats; ++i) {
        const auto t0 = Clock::now();
        const auto results = captioner.caption_batch(images, request);
        wall.push_back(ms_since(t0));
        enc.push_back(results.front().timings.encoder_ms);
      }
      batch_images_per_s = static_cast<double>(batch) / (median(wall) * 1e-3);
      batch_encoder_ms = median(enc);
    }
    // Before the roofline measurements, which allocate buffers of their own.
    const std::int64_t peak_rss = perf::peak_rss_bytes();

    const bool roofline = vm.count("no-roofline") == 0;
    double peak_gflops = 0, bandwidth = 0;
    if (roofline) {
      peak_gflops = perf::matmul_gflops(info.compute_dtype == "bf16" ? ComputeType::BF16 : ComputeType::F32, threads);
      bandwidth = perf::read_bandwidth_gbps(threads);
    }

    const double enc_ms = median(st.encoder), tok_ms = median(st.per_token);
    const double enc_gflops = info.encoder_flops / (enc_ms * 1e-3) * 1e-9;
    const double floor_ms = bandwidth > 0 ? info.decoder_step_bytes / (bandwidth * 1e9) * 1e3 : 0;
    const double weights_f32 = 4.0 * static_cast<double>(info.parameters);

    if (json_out) {
      nlohmann::json j;
      j["model"] = info.dir.string();
      j["parameters"] = info.parameters;
      j["dtype"] = info.compute_dtype;
      j["threads"] = threads;
      j["beams"] = beams;
      j["new_tokens"] = new_tokens;
      j["generated_tokens"] = st.tokens;
      j["repeats"] = repeats;
      j["caption"] = last.caption;
      j["load_ms"] = info.load_ms;
      j["load_wall_ms"] = load_wall_ms;
      j["median_ms"] = {{"preprocess", median(st.preprocess)}, {"encoder", enc_ms},
                        {"cross_kv", median(st.cross_kv)},     {"decode", median(st.decode)},
                        {"per_token", tok_ms},                 {"end_to_end", median(st.total)}};
      j["end_to_end_ms"] = st.total;
      if (batch > 0)
        j["batch"] = {{"size", batch}, {"images_per_s", batch_images_per_s}, {"encoder_ms_per_image", batch_encoder_ms},
                      {"sequential_images_per_s", 1e3 / median(st.total)}};
      j["peak_rss_bytes"] = peak_rss;
      j["weights_f32_bytes"] = weights_f32;
      j["encoder_gflop"] = info.encoder_flops * 1e-9;
      j["encoder_gflops_per_s"] = enc_gflops;
      j["decoder_step_bytes"] = info.decoder_step_bytes;
      if (roofline) {
        j["matmul_peak_gflops"] = peak_gflops;
        j["read_bandwidth_gbps"] = bandwidth;
        j["encoder_fraction_of_peak"] = enc_gflops / peak_gflops;
        j["decode_floor_ms"] = floor_ms;
        j["decode_fraction_of_floor"] = floor_ms / tok_ms;
      }
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      return kOk;
    }

    std::cout << fmt::format("model       {} ({}, {:.1f} M parameters), dtype {}, threads {}\n",
                             info.dir.string(), info.family, info.parameters * 1e-6, info.compute_dtype,
                             threads > 0 ? std::to_string(threads) : "all");
    std::cout << fmt::format("run         beams {}, {} new tokens ({} generated), median of {} after a warm-up\n",
                             beams, new_tokens, st.tokens, repeats);
    std::cout << fmt::format("load        {:9.1f} ms\n", info.load_ms);
    std::cout << fmt::format("preprocess  {:9.2f} ms\n", median(st.preprocess));
    std::cout << fmt::format("encoder     {:9.2f} ms   {:.1f} GFLOP at {:.0f} GFLOP/s", enc_ms,
                             info.encoder_flops * 1e-9, enc_gflops);
    if (roofline)
      std::cout << fmt::format(" = {:.0f}% of the matmul peak ({:.0f} GFLOP/s)", 100 * enc_gflops / peak_gflops,
                               peak_gflops);
    std::cout << "\n";
    std::cout << fmt::format("cross K/V   {:9.2f} ms\n", median(st.cross_kv));
    std::cout << fmt::format("per token   {:9.2f} ms   reads {:.3f} GB", tok_ms, info.decoder_step_bytes * 1e-9);
    if (roofline)
      std::cout << fmt::format(": floor {:.2f} ms at {:.1f} GB/s = {:.0f}% of the floor", floor_ms, bandwidth,
                               100 * floor_ms / tok_ms);
    std::cout << "\n";
    std::cout << fmt::format("end to end  {:9.2f} ms   ({:.2f} images/s one at a time)\n", median(st.total),
                             1e3 / median(st.total));
    if (batch > 0)
      std::cout << fmt::format("batch {:<4}  {:9.2f} images/s (encoder {:.2f} ms per image)\n", batch,
                               batch_images_per_s, batch_encoder_ms);
    std::cout << fmt::format("peak RSS    {:9.1f} MB   = {:.2f}x the float32 weights ({:.1f} MB)\n",
                             peak_rss * 1e-6, peak_rss / weights_f32, weights_f32 * 1e-6);
    std::cout << fmt::format("caption     {}\n", last.caption);
    return kOk;
  } catch (const std::exception& e) {
    return report_error(e);
  }
}

}  // namespace xcaption::cli
