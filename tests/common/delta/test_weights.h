// Weight tensors for the delta tests: Gaussian floats and their little-endian bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace edgefleet::delta::internal {

inline std::vector<float> Weights(size_t count, uint32_t seed, float sigma = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> w(count);
  for (float& v : w) v = dist(rng);
  return w;
}

inline std::string Bytes(const std::vector<float>& w) {
  std::string out(w.size() * sizeof(float), '\0');
  std::memcpy(out.data(), w.data(), out.size());
  return out;
}

}  // namespace edgefleet::delta::internal
