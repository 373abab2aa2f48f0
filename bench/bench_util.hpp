// Small helpers the C++ benchmark programs share.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace xcaption::bench {

/// n values drawn from N(0, 0.05²) with a fixed seed: weights and inputs of a linear-layer bench.
inline std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

}  // namespace xcaption::bench
