// Tests of the low-rank prediction: a merged adapter (W + B * A, computed in float32 as training
// frameworks do) must be found at its true rank and predict nearly every new weight exactly; a
// fine-tune, an unchanged matrix and non-finite changes must not be taken for one; and the
// prediction must be the documented arithmetic, with non-finite weights predicting themselves.
#include "common/delta/internal/low_rank.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/delta/test_weights.h"

namespace edgefleet::delta::internal {
namespace {

// W + (alpha / r) * B * A with B rows x r and A r x cols, every step in float32.
std::vector<float> MergeAdapter(const std::vector<float>& w, size_t rows, size_t cols, size_t r,
                                uint32_t seed) {
  const std::vector<float> b = Weights(rows * r, seed, 0.05f * 0.05f);
  const std::vector<float> a = Weights(r * cols, seed + 1, 0.05f);
  std::vector<float> merged(w.size());
  for (size_t i = 0; i < rows; ++i) {
    for (size_t j = 0; j < cols; ++j) {
      float product = 0;
      for (size_t t = 0; t < r; ++t) product += b[i * r + t] * a[t * cols + j];
      merged[i * cols + j] = w[i * cols + j] + 2.0f * product;
    }
  }
  return merged;
}

// Fraction of words whose prediction is the new word exactly.
double ExactFraction(const LowRankFactors& f, const std::string& old_words,
                     const std::string& new_words) {
  const size_t width = static_cast<size_t>(f.width);
  std::string predicted(old_words.size(), '\0');
  PredictLowRankWords(f, old_words.data(), 0, old_words.size() / width, predicted.data());
  size_t exact = 0;
  for (size_t i = 0; i < old_words.size(); i += width) {
    exact += std::memcmp(predicted.data() + i, new_words.data() + i, width) == 0;
  }
  return static_cast<double>(exact) / static_cast<double>(old_words.size() / width);
}

TEST(LowRankTest, FindsAMergedAdapterAtItsRankAndPredictsMostWeightsExactly) {
  uint32_t seed = 3;
  for (auto [rows, cols, rank] : {std::tuple<size_t, size_t, uint32_t>{600, 700, 8},
                                  {300, 128, 4},
                                  {209, 209, 32},
                                  {1000, 64, 16}}) {
    SCOPED_TRACE(testing::Message() << rows << " x " << cols << ", rank " << rank);
    const std::vector<float> w = Weights(rows * cols, seed++);
    const std::string old_words = Bytes(w);
    const std::string new_words = Bytes(MergeAdapter(w, rows, cols, rank, seed++));
    const std::optional<LowRankFactors> f = FindLowRankUpdate(old_words, new_words, 4, rows);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->rank, rank);
    EXPECT_EQ(f->rows, rows);
    EXPECT_EQ(f->cols, cols);
    EXPECT_EQ(f->u.size(), rows * rank);
    EXPECT_EQ(f->vt.size(), cols * rank);
    // Unchanged weights predict about 0% (every weight moved); the rest is the merge's rounding.
    EXPECT_GT(ExactFraction(*f, old_words, new_words), 0.75);
  }
}

TEST(LowRankTest, AFineTuneAnUnchangedMatrixOrNonFiniteChangesAreNotLowRank) {
  const size_t rows = 700, cols = 300;
  const std::vector<float> w = Weights(rows * cols, 5);
  std::vector<float> tuned = w;
  const std::vector<float> noise = Weights(rows * cols, 6, 1e-3f);
  for (size_t i = 0; i < tuned.size(); ++i) tuned[i] *= 1.0f + noise[i];
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(tuned), 4, rows).has_value());
  // Small matrices are searched in full (no row sample): still no structure found.
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w).substr(0, 200 * 300 * 4),
                                 Bytes(tuned).substr(0, 200 * 300 * 4), 4, 200)
                   .has_value());
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(w), 4, rows).has_value());

  std::vector<float> merged = MergeAdapter(w, rows, cols, 4, 7);
  ASSERT_TRUE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, rows).has_value());
  merged[12345] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, rows).has_value());
  merged[12345] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, rows).has_value());
  // Shapes that are not a matrix of at least 16 x 16, or rows that do not divide the words.
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, 0).has_value());
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, 701).has_value());
  EXPECT_FALSE(FindLowRankUpdate(Bytes(w), Bytes(merged), 4, rows * cols / 8).has_value());
}

TEST(LowRankTest, PredictionIsOldPlusTheProductInDoubleThenFloat) {
  LowRankFactors f;
  f.rows = 2;
  f.cols = 3;
  f.rank = 2;
  f.u = {0.5f, -1.0f, 2.0f, 0.25f};              // rows x rank
  f.vt = {1.0f, 1.0f, 0.1f, 3.0f, -2.0f, 0.0f};  // cols x rank
  const float old_value = 1.5f;
  // Row 1, column 1: 2.0 * 0.1 + 0.25 * 3.0 in double, added to the old value, then to float.
  const double change = 2.0 * static_cast<double>(0.1f) + 0.25 * 3.0;
  const float expected = static_cast<float>(static_cast<double>(old_value) + change);
  EXPECT_EQ(PredictLowRankWord(f, std::bit_cast<uint32_t>(old_value), 4),
            std::bit_cast<uint32_t>(expected));
  // Non-finite old weights, and predictions beyond float range, predict the old word.
  for (float v : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                  -std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(PredictLowRankWord(f, std::bit_cast<uint32_t>(v), 0), std::bit_cast<uint32_t>(v));
  }
  f.u[0] = 3e38f;
  f.vt[0] = 3e38f;
  const uint32_t big = std::bit_cast<uint32_t>(1.0f);
  EXPECT_EQ(PredictLowRankWord(f, big, 0), big);
}

// float16 words (IEEE binary16 bits) for the values in `values`.
[[maybe_unused]] std::string HalfBytes(const std::vector<uint16_t>& bits) {
  std::string out(bits.size() * 2, '\0');
  for (size_t i = 0; i < bits.size(); ++i) {
    out[2 * i] = static_cast<char>(bits[i]);
    out[2 * i + 1] = static_cast<char>(bits[i] >> 8);
  }
  return out;
}

TEST(LowRankTest, Float16PredictionRoundsToNearestEvenAndRefusesOverflow) {
  // One row, one column, rank 1 with u = 1: the prediction of an old +0.0 is the change, rounded.
  LowRankFactors f;
  f.width = 2;
  f.rows = 1;
  f.cols = 1;
  f.rank = 1;
  f.u = {1.0f};
  const uint32_t zero = 0x0000;
  const std::vector<std::pair<float, uint32_t>> cases = {
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},                      // largest finite
      {65505.0f, zero},                        // beyond it: the old word
      {std::ldexp(1.0f, -24), 0x0001},         // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},         // half of it: tie to even (zero)
      {3 * std::ldexp(1.0f, -25), 0x0002},     // 1.5 units: tie to even (two)
      {1.0f + std::ldexp(1.0f, -11), 0x3c00},  // tie between 1 and its successor: even
      {1.0f + 3 * std::ldexp(1.0f, -11), 0x3c02},
      {std::ldexp(1023.0f, -24), 0x03ff},  // largest subnormal
      {std::ldexp(2047.0f, -25), 0x0400},  // rounds up into the smallest normal
      {0.1f, 0x2e66},
  };
  for (auto [change, expected] : cases) {
    SCOPED_TRACE(change);
    f.vt = {change};
    EXPECT_EQ(PredictLowRankWord(f, zero, 0), expected);
  }
  // Non-finite float16 words (exponent all ones) predict themselves.
  f.vt = {1.0f};
  for (uint32_t bits : {0x7c00u, 0xfc00u, 0x7e00u}) EXPECT_EQ(PredictLowRankWord(f, bits, 0), bits);
  // Old 1.0 (0x3c00) plus 0.5 is 1.5 (0x3e00).
  f.vt = {0.5f};
  EXPECT_EQ(PredictLowRankWord(f, 0x3c00, 0), 0x3e00u);
}

TEST(LowRankTest, FindsAnAdapterMergedIntoFloat16Weights) {
#if defined(__clang__) && __clang_major__ < 15
  // Clang before 15 has no _Float16 on x86-64 (the sanitizer builds); g++ runs this test.
  GTEST_SKIP() << "_Float16 needs clang 15 or g++ 12";
#else
  const size_t rows = 400, cols = 300;
  // The deployed float16 weights, and the adapter merged into them in float32 and rounded back.
  std::vector<float> w = Weights(rows * cols, 21);
  for (float& v : w) v = static_cast<float>(static_cast<_Float16>(v));
  const std::vector<float> merged = MergeAdapter(w, rows, cols, 8, 22);
  auto to_half = [](const std::vector<float>& values) {
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const _Float16 h = static_cast<_Float16>(values[i]);
      std::memcpy(&bits[i], &h, 2);
    }
    return HalfBytes(bits);
  };
  const std::string old_words = to_half(w);
  const std::string new_words = to_half(merged);
  const std::optional<LowRankFactors> f = FindLowRankUpdate(old_words, new_words, 2, rows);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->rank, 8u);
  EXPECT_EQ(f->width, 2);
  const double full = ExactFraction(*f, old_words, new_words);
  EXPECT_GT(full, 0.75);
  // Float16 factors (half the table) predict float16 weights as well as float32 ones.
  const std::optional<LowRankFactors> half = HalfPrecisionFactors(*f);
  ASSERT_TRUE(half.has_value());
  EXPECT_EQ(half->factor_width, 2);
  for (const std::vector<float>* factor : {&half->u, &half->vt}) {
    for (float x : *factor) ASSERT_EQ(Float16Value(Float16Bits(x)), x);
  }
  EXPECT_GT(ExactFraction(*half, old_words, new_words), full - 0.01);
#endif
}

TEST(LowRankTest, Float16FactorsAreExactHalvesScaledIntoRange) {
  EXPECT_EQ(Float16Bits(1.0f), 0x3c00);
  EXPECT_EQ(Float16Bits(-2.0f), 0xc000);
  EXPECT_EQ(Float16Bits(65504.0f), 0x7bff);
  EXPECT_EQ(Float16Bits(std::ldexp(1.0f, -24)), 0x0001);  // the smallest subnormal
  EXPECT_EQ(Float16Value(0x3555), 0.333251953125f);
  EXPECT_EQ(Float16Value(0x0001), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isnan(Float16Value(0x7c00)));  // infinity
  EXPECT_TRUE(std::isnan(Float16Value(0xfe00)));  // NaN

  // A direction with a tiny u and a large v (a product of 0.01) is rebalanced to about 0.1 each,
  // inside float16's range, and keeps its product.
  LowRankFactors f;
  f.rows = 2;
  f.cols = 1;
  f.rank = 1;
  f.u = {1e-6f, -5e-7f};
  f.vt = {1e4f};
  std::optional<LowRankFactors> half = HalfPrecisionFactors(f);
  ASSERT_TRUE(half.has_value());
  EXPECT_NEAR(half->u[0] * half->vt[0], 1e-2, 1e-2 / 1024);
  EXPECT_NEAR(half->u[1] * half->vt[0], -5e-3, 5e-3 / 1024);
  // One whose balanced magnitude is still beyond float16 (1e6 each) cannot be stored so.
  f.u = {1e6f, 1e6f};
  f.vt = {1e6f};
  EXPECT_FALSE(HalfPrecisionFactors(f).has_value());
}

TEST(LowRankTest, ShapeBoundsKeepTheDecodersFactorsWithinFourMebibytes) {
  EXPECT_TRUE(LowRankShapeValid(4096, 4096, 64));  // 2 MiB of factors
  EXPECT_TRUE(LowRankShapeValid(1, 1, 1));
  EXPECT_FALSE(LowRankShapeValid(0, 10, 1));
  EXPECT_FALSE(LowRankShapeValid(10, 0, 1));
  EXPECT_FALSE(LowRankShapeValid(10, 10, 0));
  EXPECT_FALSE(LowRankShapeValid(10, 10, kMaxLowRank + 1));
  EXPECT_TRUE(LowRankShapeValid(8192, 8192, 64));   // 4 MiB exactly
  EXPECT_FALSE(LowRankShapeValid(8192, 8193, 64));  // 256 bytes more
  EXPECT_FALSE(LowRankShapeValid(uint64_t{1} << 62, 1, 1));
  EXPECT_FALSE(LowRankShapeValid(1, ~uint64_t{0}, 1));
}

}  // namespace
}  // namespace edgefleet::delta::internal
