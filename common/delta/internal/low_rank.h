// Low-rank weight updates. LoRA and other adapters change a weight matrix W (rows x cols) to
// W + B * A with B (rows x r) and A (r x cols) of a rank r far below its dimensions, so
// new - old is a rank-r matrix up to float rounding. The tensor codec then sends r * (rows + cols)
// factors and predicts every new weight as old + u_i . v_j, rounded to the weight's float format:
// what is left to code is the rounding of the merge, mostly zero, where a per-weight code would
// pay for every changed weight.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace edgefleet::delta::internal {

// Decoder bounds on the factors: the rank, and the memory they take (they are held for the
// whole tensor, so this is the codec's largest allocation after its chunk buffers).
inline constexpr uint32_t kMaxLowRank = 64;
inline constexpr uint64_t kMaxLowRankFactorBytes = uint64_t{4} << 20;

// new - old ~ U * V^T for a rows x cols matrix of float32 (width 4) or float16 (width 2) words
// stored row-major. The factors are held as float32; a patch stores them in factor_width bytes.
struct LowRankFactors {
  int width = 4;
  uint64_t rows = 0;
  uint64_t cols = 0;
  uint32_t rank = 0;
  // 4: float32; 2: float16, every factor exactly a float16 value.
  int factor_width = 4;
  std::vector<float> u;   // rows x rank, row-major
  std::vector<float> vt;  // cols x rank, row-major (V^T): a prediction reads two contiguous runs
};

// True when a decoder may allocate factors of this shape.
bool LowRankShapeValid(uint64_t rows, uint64_t cols, uint32_t rank);

// The factors of new - old when it is (up to rounding noise) of low rank, found with a
// randomized range finder that adds eight directions at a time for as long as each captures far
// more than noise would. Costs four passes over the matrix per eight directions (one power
// step); a matrix whose change is full rank (fine-tuning) is recognised on a sample of its rows
// first. `old_words` and `new_words` are little-endian words of `width` bytes (4: float32,
// 2: float16), rows x cols with cols = size / width / rows.
std::optional<LowRankFactors> FindLowRankUpdate(std::string_view old_words,
                                                std::string_view new_words, int width,
                                                uint64_t rows);

// The factors in float16, for a table half the size: enough wherever the update is small next to
// the weights' own precision (float16 weights). Each direction is first rescaled so its u and v
// share one magnitude (the product is unchanged), which keeps both inside float16's range.
// nullopt when a factor would still overflow.
std::optional<LowRankFactors> HalfPrecisionFactors(const LowRankFactors& factors);

// float16 bits of a float that is exactly a float16 value (as HalfPrecisionFactors makes them),
// and the float of any float16 bits (NaN for infinities and NaNs).
uint16_t Float16Bits(float value);
float Float16Value(uint16_t bits);

// The predicted new word at flat index `index` (row-major) from its old word: old + u_i . v_j
// summed in double in a fixed order, then rounded to the word's format (to nearest, ties to
// even), or the old word itself where either is not finite. Uses only correctly rounded double
// arithmetic and exact scaling (the products of two floats are exact in double, so fused
// multiply-adds give the same result), so every platform predicts the same bits.
uint32_t PredictLowRankWord(const LowRankFactors& factors, uint32_t old_bits, uint64_t index);

// PredictLowRankWord for `count` consecutive little-endian words of factors.width bytes,
// starting at flat index `first`.
void PredictLowRankWords(const LowRankFactors& factors, const char* old_words, uint64_t first,
                         uint64_t count, char* predicted_words);

}  // namespace edgefleet::delta::internal
