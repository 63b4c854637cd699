// How the tensor codec turns an aligned (old word, new word) pair into the word it stores, and
// back. Most transforms are "XOR against a prediction of the new word from the old one"; the
// predictions model what ML tooling does to weights between versions:
//   - fine-tuning moves every weight a little: predict "unchanged" (XOR, or subtract);
//   - magnitude pruning zeroes the weights below a threshold: predict zero below it;
//   - quantize/dequantize (QDQ, fake-quant) snaps weights to a grid of integer multiples of a
//     scale: predict the old weight snapped to the new tensor's grid;
//   - merging a low-rank adapter (LoRA) adds a rank-r matrix: predict old + that matrix, whose
//     factors travel with the tensor (low_rank.h); the prediction depends on the word's position,
//     so the caller computes it and passes it in place of the old word.
// The decoder must rebuild the encoder's prediction bit for bit, so predictions use only integer
// operations or correctly rounded IEEE-754 double arithmetic, with every parameter validated.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace edgefleet::delta::internal {

// Stored in the tensor patch's table; the numbers are part of the format.
enum class Transform : int {
  kXor = 0,         // new ^ old
  kZigzagSub = 1,   // zigzag(new - old), word-width two's complement
  kLiteral = 2,     // new (no old counterpart)
  kXorZero = 3,     // XOR, with "set to zero" coded as one marker in the top byte
  kPruneXor = 4,    // new ^ (|old| <= threshold ? 0 : old), float32 words
  kGridXor = 5,     // new ^ float32(clamp(rint(old / step), grid_min, grid_max) * step)
  kLowRankSub = 6,  // zigzag(new - p), p = the low-rank prediction, passed as the old word
};
inline constexpr int kTransformCount = 7;

// Parameters of the predicting transforms (zero for the others).
struct TransformParams {
  uint32_t prune_threshold = 0;   // bits of |old| (sign cleared) at or below which it is pruned
  bool prune_keeps_sign = false;  // pruned to -0.0 where old was negative (mask multiplication)
  double grid_step = 0;           // the quantization scale
  int64_t grid_min = 0;           // smallest and largest integer code
  int64_t grid_max = 0;
};

// Grid codes that a decoder accepts (float32 holds every such integer exactly).
inline constexpr int64_t kMaxGridCode = int64_t{1} << 24;

// True when `params` are usable by `transform` at `width` bytes per word; a decoder refuses
// anything else. The predicting transforms need float32 words (width 4); the low-rank one also
// takes float16 (width 2).
bool TransformParamsValid(Transform transform, int width, const TransformParams& params);

// The little-endian word of `width` bytes (at most 8) at `p`, and its inverse.
inline uint64_t LoadWord(const char* p, int width) {
  uint64_t v = 0;
  for (int k = 0; k < width; ++k) v |= uint64_t{static_cast<uint8_t>(p[k])} << (8 * k);
  return v;
}

inline void StoreWord(char* p, int width, uint64_t v) {
  for (int k = 0; k < width; ++k) p[k] = static_cast<char>(v >> (8 * k));
}

// One transform bound to its word width and parameters. Words are little-endian, at most 8 bytes.
class WordTransform {
 public:
  WordTransform(Transform transform, int width, const TransformParams& params = {})
      : transform_(transform), width_(width), params_(params) {}

  uint64_t Forward(uint64_t old_word, uint64_t new_word) const;
  uint64_t Reconstruct(uint64_t old_word, uint64_t stored) const;

  Transform transform() const { return transform_; }

 private:
  uint64_t Predict(uint64_t old_word) const;

  Transform transform_;
  int width_;
  TransformParams params_;
};

// The grid that a tensor's float32 values lie on, when they do: every value is (nearly) an
// integer multiple of one step, with codes within kMaxGridCode. The step is recovered as the
// quantizer's own where the values allow (so that predictions match to the last bit). `words`
// are little-endian float32.
std::optional<TransformParams> DetectGrid(std::string_view new_words);

// The magnitude-pruning threshold between two aligned float32 tensors, when at least 1% of the
// old non-zero weights became zero: the largest such |old| (as bits), and whether pruned
// negative weights became -0.0 (as multiplying by a 0/1 mask does) rather than +0.0.
std::optional<TransformParams> DetectPruneThreshold(std::string_view old_words,
                                                    std::string_view new_words);

}  // namespace edgefleet::delta::internal
