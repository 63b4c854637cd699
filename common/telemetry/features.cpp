#include "common/telemetry/features.h"

#include <algorithm>

namespace edgefleet::telemetry {
namespace {

constexpr size_t kPixelsPerChannel = 4096;

}  // namespace

size_t ExtractFeatures(std::span<const int64_t> shape, std::span<const float> data,
                       std::vector<double>& features) {
  features.clear();
  if (shape.empty() || std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d <= 0; }))
    return 0;
  if (shape.size() == 1 || shape.size() == 2) {
    const auto width = static_cast<size_t>(shape.back());
    if (data.size() % width != 0) return 0;
    features.assign(data.begin(), data.end());
    return width;
  }
  if (shape.size() == 4) {
    const auto images = static_cast<size_t>(shape[0]);
    const auto channels = static_cast<size_t>(shape[1]);
    const auto plane = static_cast<size_t>(shape[2] * shape[3]);
    if (data.size() != images * channels * plane) return 0;
    // At most kPixelsPerChannel evenly strided pixels per plane: a channel's level is estimated
    // as well from 4,096 pixels as from 50,176, at a fixed cost per request.
    const size_t stride = std::max<size_t>(1, plane / kPixelsPerChannel);
    features.reserve(images * channels);
    for (size_t i = 0; i < images * channels; ++i) {
      const float* p = data.data() + i * plane;
      double sum = 0;
      size_t n = 0;
      for (size_t k = 0; k < plane; k += stride, ++n) sum += p[k];
      features.push_back(sum / static_cast<double>(n));
    }
    return channels;
  }
  return 0;
}

void ExtractOutputs(std::span<const int64_t> shape, std::span<const float> data,
                    std::vector<double>& values) {
  values.clear();
  if (shape.empty() || data.empty()) return;
  const int64_t last = shape.back();
  if (last <= 0 || data.size() % static_cast<size_t>(last) != 0) return;
  const auto width = static_cast<size_t>(last);
  for (size_t row = 0; row < data.size(); row += width) {
    if (width == 1) {
      values.push_back(data[row]);
      continue;
    }
    const auto begin = data.begin() + static_cast<ptrdiff_t>(row);
    values.push_back(static_cast<double>(
        std::max_element(begin, begin + static_cast<ptrdiff_t>(width)) - begin));
  }
}

}  // namespace edgefleet::telemetry
