// Renderer throughput: scenes per second for make_scene (pixels in memory) and for render_scenes
// (PNG + JSONL on disk). Not built by default:
//   cmake --build build --target scenes_bench
//   ./build/scenes_bench [count] [out_dir]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <xcaption/scenes.hpp>

int main(int argc, char** argv) {
  namespace sc = xcaption::scenes;
  const std::int64_t count = argc > 1 ? std::atoll(argv[1]) : 2000;
  const std::filesystem::path out = argc > 2 ? argv[2] : std::filesystem::temp_directory_path() / "scenes_bench";
  sc::RenderOptions options;
  options.seed = 7;
  options.count = count;

  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  std::int64_t pixels = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    sc::SceneImage image;
    sc::make_scene(options, i, &image);
    pixels += static_cast<std::int64_t>(image.width) * image.height;
  }
  const double t_mem = std::chrono::duration<double>(Clock::now() - t0).count();

  t0 = Clock::now();
  for (std::int64_t i = 0; i < count; ++i) sc::make_scene(options, i, nullptr);
  const double t_layout = std::chrono::duration<double>(Clock::now() - t0).count();

  t0 = Clock::now();
  sc::render_scenes(options, out, {});
  const double t_disk = std::chrono::duration<double>(Clock::now() - t0).count();

  std::printf("scenes: %lld, mean pixels %.0f\n", static_cast<long long>(count), double(pixels) / count);
  std::printf("make_scene, layout only (1 thread): %.0f scenes/s\n", count / t_layout);
  std::printf("make_scene with pixels (1 thread):  %.0f scenes/s\n", count / t_mem);
  std::printf("render_scenes PNG+JSONL (OpenMP):   %.0f scenes/s -> %s\n", count / t_disk, out.c_str());
  return 0;
}
