#include "common/delta/internal/tensor_transforms.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace edgefleet::delta::internal {
namespace {

constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kMagnitudeBits = 0x7fffffffu;
constexpr uint32_t kInfinityBits = 0x7f800000u;

uint64_t ZigzagEncode(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

int64_t ZigzagDecode(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

uint64_t WidthMask(int width) {
  return width == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * width)) - 1;
}

// Top byte all ones: flips sign and exponent bits, which fine-tuning never does.
uint64_t ZeroEscape(int width) { return uint64_t{0xff} << (8 * (width - 1)); }

float FloatAt(std::string_view words, size_t i) {
  uint32_t bits;
  std::memcpy(&bits, words.data() + 4 * i, 4);
  return std::bit_cast<float>(bits);
}

uint32_t BitsAt(std::string_view words, size_t i) {
  uint32_t bits;
  std::memcpy(&bits, words.data() + 4 * i, 4);
  return bits;
}

// Detection looks at this many evenly spread values before committing to a full pass.
constexpr size_t kGridSample = 4096;
// Grids finer than this many codes are fine-tuned floats, not quantized ones.
constexpr double kMaxDetectedGridCode = 65536;
// A sampled value is on the grid when value / step is this close to an integer.
constexpr double kOnGridTolerance = 1e-3;
constexpr size_t kMinGridWords = 64;
constexpr int kMaxStepsInSmallest = 8;

// The doubles x for which float(x) == v: the open interval between v's neighbours' midpoints.
void RoundingInterval(float v, double* lo, double* hi) {
  const float below = std::nextafter(v, -std::numeric_limits<float>::infinity());
  const float above = std::nextafter(v, std::numeric_limits<float>::infinity());
  // Sums of adjacent floats are exact in double, and halving is exact.
  *lo = (static_cast<double>(v) + below) / 2;
  *hi = (static_cast<double>(v) + above) / 2;
}

}  // namespace

bool TransformParamsValid(Transform transform, int width, const TransformParams& params) {
  if (width != 1 && width != 2 && width != 4 && width != 8) return false;
  switch (transform) {
    case Transform::kXor:
    case Transform::kZigzagSub:
    case Transform::kLiteral:
    case Transform::kXorZero:
      return true;
    case Transform::kPruneXor:
      return width == 4 && params.prune_threshold <= kMagnitudeBits;
    case Transform::kGridXor:
      return width == 4 && std::isnormal(params.grid_step) && params.grid_step > 0 &&
             params.grid_min <= params.grid_max && params.grid_min >= -kMaxGridCode &&
             params.grid_max <= kMaxGridCode;
    case Transform::kLowRankSub:
      return width == 4 || width == 2;  // float32 or float16; the factors are checked when read
  }
  return false;
}

uint64_t WordTransform::Predict(uint64_t old_word) const {
  const auto bits = static_cast<uint32_t>(old_word);
  if (transform_ == Transform::kPruneXor) {
    if ((bits & kMagnitudeBits) > params_.prune_threshold) return bits;
    return params_.prune_keeps_sign ? (bits & kSignBit) : 0;
  }
  // kGridXor. Non-finite weights and products beyond float range predict themselves, so no
  // conversion below is ever out of range.
  if ((bits & kMagnitudeBits) >= kInfinityBits) return bits;
  const double code = std::clamp(
      std::nearbyint(static_cast<double>(std::bit_cast<float>(bits)) / params_.grid_step),
      static_cast<double>(params_.grid_min), static_cast<double>(params_.grid_max));
  const double value = code * params_.grid_step;
  if (!(std::fabs(value) <= std::numeric_limits<float>::max())) return bits;
  return std::bit_cast<uint32_t>(static_cast<float>(value));
}

uint64_t WordTransform::Forward(uint64_t ow, uint64_t nw) const {
  switch (transform_) {
    case Transform::kXor:
      return ow ^ nw;
    case Transform::kZigzagSub:
    case Transform::kLowRankSub: {
      // Sign-extend the width-sized difference, then zigzag so that small moves in either
      // direction have zero high bytes.
      const int shift = 64 - 8 * width_;
      const int64_t d = static_cast<int64_t>((nw - ow) << shift) >> shift;
      return ZigzagEncode(d) & WidthMask(width_);
    }
    case Transform::kLiteral:
      return nw;
    case Transform::kXorZero:
      if (ow == 0) return nw;
      if (nw == 0) return ZeroEscape(width_);
      if (nw == (ow ^ ZeroEscape(width_))) return ow;
      return ow ^ nw;
    case Transform::kPruneXor:
    case Transform::kGridXor:
      return Predict(ow) ^ nw;
  }
  return nw;
}

uint64_t WordTransform::Reconstruct(uint64_t ow, uint64_t d) const {
  switch (transform_) {
    case Transform::kXor:
      return ow ^ d;
    case Transform::kZigzagSub:
    case Transform::kLowRankSub:
      return (ow + static_cast<uint64_t>(ZigzagDecode(d))) & WidthMask(width_);
    case Transform::kLiteral:
      return d;
    case Transform::kXorZero:
      if (ow == 0) return d;
      if (d == ZeroEscape(width_)) return 0;
      if (d == ow) return ow ^ ZeroEscape(width_);
      return ow ^ d;
    case Transform::kPruneXor:
    case Transform::kGridXor:
      return Predict(ow) ^ d;
  }
  return d;
}

std::optional<TransformParams> DetectGrid(std::string_view new_words) {
  const size_t n = new_words.size() / 4;
  if (n < kMinGridWords) return std::nullopt;
  const size_t stride = std::max<size_t>(1, n / kGridSample);

  // A quick look at a sample: the smallest non-zero magnitude is most likely one step.
  float sample_max = 0;
  float sample_min = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; i += stride) {
    const float a = std::fabs(FloatAt(new_words, i));
    if (!std::isfinite(a)) return std::nullopt;
    if (a == 0) continue;
    sample_max = std::max(sample_max, a);
    sample_min = std::min(sample_min, a);
  }
  if (sample_max == 0) return std::nullopt;
  // In a small tensor no value may be one step from zero: try the smallest magnitude as a few
  // steps too, keeping the coarsest grid that every sampled value lies on.
  double step = 0;
  for (int steps_in_min = 1; steps_in_min <= kMaxStepsInSmallest && step == 0; ++steps_in_min) {
    const double codes = std::nearbyint(sample_max / (sample_min / steps_in_min));
    if (codes > kMaxDetectedGridCode) break;
    const double candidate = sample_max / codes;
    bool on_grid = true;
    for (size_t i = 0; i < n && on_grid; i += stride) {
      const double r = FloatAt(new_words, i) / candidate;
      on_grid = std::fabs(r - std::nearbyint(r)) <= kOnGridTolerance;
    }
    if (on_grid) step = candidate;
  }
  if (step == 0) return std::nullopt;

  // Every value must be finite; the largest magnitude pins the step down best.
  float max_abs = 0;
  for (size_t i = 0; i < n; ++i) {
    const float a = std::fabs(FloatAt(new_words, i));
    if (!std::isfinite(a)) return std::nullopt;
    max_abs = std::max(max_abs, a);
  }
  const double max_code = std::nearbyint(max_abs / step);
  if (max_code < 1 || max_code > kMaxDetectedGridCode) return std::nullopt;
  step = max_abs / max_code;

  // The quantizer's own step is in the intersection of "k * step rounds to v" over the values;
  // any step inside it reproduces them bit for bit. A sample pins it down closely enough.
  double lo = 0;
  double hi = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; i += stride) {
    const float v = FloatAt(new_words, i);
    const double k = std::nearbyint(v / step);
    if (k == 0) continue;
    double xlo, xhi;
    RoundingInterval(v, &xlo, &xhi);
    double a = xlo / k, b = xhi / k;
    if (k < 0) std::swap(a, b);
    lo = std::max(lo, a);
    hi = std::min(hi, b);
  }
  // Ties round to even, so an interval can close on the step itself: lo == hi is a hit.
  if (lo <= hi && std::isfinite(hi)) {
    step = lo + (hi - lo) / 2;
    // ONNX scales are float32: prefer the float32 in the interval, which is the scale itself.
    const double as_float = static_cast<float>(step);
    if (lo <= as_float && as_float <= hi) step = as_float;
  }

  TransformParams params;
  params.grid_step = step;
  double code_min = 0, code_max = 0;
  for (size_t i = 0; i < n; ++i) {
    const double k = std::nearbyint(FloatAt(new_words, i) / step);
    code_min = std::min(code_min, k);
    code_max = std::max(code_max, k);
  }
  params.grid_min = static_cast<int64_t>(code_min);
  params.grid_max = static_cast<int64_t>(code_max);
  if (!TransformParamsValid(Transform::kGridXor, 4, params)) return std::nullopt;
  return params;
}

std::optional<TransformParams> DetectPruneThreshold(std::string_view old_words,
                                                    std::string_view new_words) {
  const size_t n = std::min(old_words.size(), new_words.size()) / 4;
  uint64_t nonzero_old = 0;
  uint64_t pruned = 0;
  uint64_t pruned_negative = 0;
  uint64_t pruned_negative_to_minus_zero = 0;
  uint32_t threshold = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t ob = BitsAt(old_words, i);
    if ((ob & kMagnitudeBits) == 0) continue;
    ++nonzero_old;
    const uint32_t nb = BitsAt(new_words, i);
    if ((nb & kMagnitudeBits) != 0) continue;
    ++pruned;
    threshold = std::max(threshold, ob & kMagnitudeBits);
    if (ob & kSignBit) {
      ++pruned_negative;
      if (nb == kSignBit) ++pruned_negative_to_minus_zero;
    }
  }
  if (pruned == 0 || pruned * 100 < nonzero_old || threshold >= kInfinityBits) {
    return std::nullopt;
  }
  TransformParams params;
  params.prune_threshold = threshold;
  params.prune_keeps_sign = pruned_negative_to_minus_zero * 2 > pruned_negative;
  return params;
}

}  // namespace edgefleet::delta::internal
