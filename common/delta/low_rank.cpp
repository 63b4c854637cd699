#include "common/delta/internal/low_rank.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "common/delta/internal/tensor_transforms.h"

namespace edgefleet::delta::internal {
namespace {

// Directions are added this many at a time (one pass over the matrix finds them, one more
// measures what they capture).
constexpr size_t kBlock = 8;
// Rows looked at before deciding whether a full search is worth it.
constexpr uint64_t kSampleRows = 512;
constexpr uint64_t kMinDimension = 16;
// A direction is signal when it captures this many times what a random direction captures of a
// matrix with no structure (the energy left, spread evenly over the dimensions left). The test in
// each round sees that energy blurred by what the round itself captures, so it is lenient; the
// final one measures it exactly and allows for the power step, which steers directions towards
// the noise's largest singular values (about 4 times the average for a square matrix).
constexpr double kSignalFactor = 6;
constexpr double kFinalSignalFactor = 16;
// The search keeps the matrix's residual in memory up to this many doubles (64 MiB).
constexpr uint64_t kCachedResidualWords = uint64_t{8} << 20;
// Factors may take at most this fraction of the tensor's own size; more is not a low-rank update.
constexpr uint64_t kMaxFactorShare = 2;

// Word i of little-endian `width`-byte words.
uint32_t WordAt(const char* words, int width, uint64_t i) {
  return static_cast<uint32_t>(LoadWord(words + i * width, width));
}

// IEEE-754 binary16 and binary32 words, read exactly into doubles and rounded back with integer
// operations or correctly rounded conversions only.
struct FloatFormat {
  int exponent_bits;
  int mantissa_bits;

  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int max_exponent() const { return (1 << exponent_bits) - 1; }
  int Exponent(uint32_t bits) const {
    return static_cast<int>((bits >> mantissa_bits) & static_cast<uint32_t>(max_exponent()));
  }
  bool Finite(uint32_t bits) const { return Exponent(bits) != max_exponent(); }

  bool IsFloat32() const { return exponent_bits == 8 && mantissa_bits == 23; }

  // The value of finite `bits`: sign, exponent and mantissa moved into a double's fields
  // (every binary16 and binary32 value is a normal double).
  double Value(uint32_t bits) const {
    if (IsFloat32()) return std::bit_cast<float>(bits);
    const uint64_t sign = uint64_t{bits >> (exponent_bits + mantissa_bits)} << 63;
    uint64_t mantissa = bits & ((uint32_t{1} << mantissa_bits) - 1);
    int exponent = Exponent(bits) - bias();
    if (Exponent(bits) == 0) {  // subnormal: normalise
      if (mantissa == 0) return std::bit_cast<double>(sign);
      exponent = 1 - bias();
      while ((mantissa & (uint64_t{1} << mantissa_bits)) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= (uint64_t{1} << mantissa_bits) - 1;
    }
    return std::bit_cast<double>(sign | (uint64_t(exponent + 1023) << 52) |
                                 (mantissa << (52 - mantissa_bits)));
  }

  // 2^e for the exponents these formats have (a double's fields, not a libm call: the prediction
  // runs per weight).
  static double PowerOfTwo(int e) { return std::bit_cast<double>(uint64_t(e + 1023) << 52); }

  // One unit in the last place of `bits`.
  double Ulp(uint32_t bits) const {
    return PowerOfTwo(std::max(1, Exponent(bits)) - bias() - mantissa_bits);
  }

  // The largest finite value, (2 - 2^-mantissa_bits) * 2^bias.
  double Largest() const { return (2.0 - PowerOfTwo(-mantissa_bits)) * PowerOfTwo(bias()); }

  // `value` rounded to nearest (ties to even), or nullopt beyond the largest finite value.
  // Integer operations on the double's fields; float32 has the hardware's conversion, which is
  // the same rounding.
  std::optional<uint32_t> Round(double value) const {
    if (!(std::fabs(value) <= Largest())) return std::nullopt;
    if (IsFloat32()) return std::bit_cast<uint32_t>(static_cast<float>(value));
    const auto b = std::bit_cast<uint64_t>(value);
    const uint32_t sign = static_cast<uint32_t>(b >> 63) << (exponent_bits + mantissa_bits);
    const int double_exponent = static_cast<int>((b >> 52) & 0x7ff);
    if (double_exponent == 0) return sign;  // zero or below 2^-1022: rounds to zero
    // value = significand * 2^(unbiased - 52); the result's exponent (subnormals share the
    // smallest) sets how many of the significand's low bits are rounded away.
    const uint64_t significand = (b & ((uint64_t{1} << 52) - 1)) | (uint64_t{1} << 52);
    const int unbiased = double_exponent - 1023;
    const int exponent = std::max(unbiased, 1 - bias());
    const int drop = 52 - mantissa_bits + (exponent - unbiased);
    if (drop > 53) return sign;  // below half the smallest subnormal
    uint64_t whole = significand >> drop;
    const uint64_t rest = significand & ((uint64_t{1} << drop) - 1);
    const uint64_t halfway = uint64_t{1} << (drop - 1);
    if (rest > halfway || (rest == halfway && (whole & 1) != 0)) ++whole;
    // Exponent field above the implicit bit's; a carry out of the mantissa lands in it.
    const uint32_t code = (static_cast<uint32_t>(exponent + bias() - 1) << mantissa_bits) +
                          static_cast<uint32_t>(whole);
    if (Exponent(code) == max_exponent()) return std::nullopt;
    return sign | code;
  }
};

constexpr FloatFormat kFloat16{5, 10};
constexpr FloatFormat kFloat32{8, 23};

const FloatFormat& FormatOf(int width) { return width == 2 ? kFloat16 : kFloat32; }

// The predicted word from the old word and the update at its position: old + change, rounded
// to the format, or the old word where it is not finite or the sum leaves the format's range.
uint32_t PredictedWord(const FloatFormat& format, uint32_t old_bits, double change) {
  if (!format.Finite(old_bits)) return old_bits;
  return format.Round(format.Value(old_bits) + change).value_or(old_bits);
}

// new - old, element by element, in double (exact for two floats of similar magnitude).
class UpdateView {
 public:
  UpdateView(std::string_view old_words, std::string_view new_words, int width, uint64_t cols)
      : old_(old_words.data()),
        new_(new_words.data()),
        width_(width),
        format_(FormatOf(width)),
        cols_(cols) {}

  uint64_t cols() const { return cols_; }

  // The energy of rounding the exact merge to the word format (a uniform error of one unit in
  // the last place of each new weight): structure below it is not worth sending.
  double RoundingEnergy(uint64_t row) const {
    double e = 0;
    for (uint64_t j = 0; j < cols_; ++j) {
      const double ulp = format_.Ulp(WordAt(new_, width_, row * cols_ + j));
      e += ulp * ulp / 12;
    }
    return e;
  }

  // NaN where either word is not finite.
  double At(uint64_t row, uint64_t col) const {
    const uint64_t i = row * cols_ + col;
    const uint32_t n = WordAt(new_, width_, i);
    const uint32_t o = WordAt(old_, width_, i);
    if (!format_.Finite(n) || !format_.Finite(o)) return std::nan("");
    return format_.Value(n) - format_.Value(o);
  }

 private:
  const char* old_;
  const char* new_;
  int width_;
  const FloatFormat& format_;
  uint64_t cols_;
};

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Orthonormal directions q (over a set of rows) and what each captures, v = q^T D (over all
// columns), with the change that is left once they are taken out.
class Directions {
 public:
  // Holds up to `max_rank` directions.
  Directions(const UpdateView& d, const std::vector<uint64_t>& rows, uint32_t max_rank)
      : d_(d), rows_(rows), stride_(max_rank) {}

  size_t rank() const { return q_.size(); }
  double Q(size_t t, size_t r) const { return q_[t][r]; }
  double V(size_t t, uint64_t j) const { return vt_[j * stride_ + t]; }

  // Row r of the set: the change left once the directions so far are taken out, into `out`.
  // Computing it directly (not as total energy minus captured energy) keeps the noise floor
  // measurable: it is about 1e-12 of the energy of a merged adapter.
  void Residual(size_t r, std::vector<double>& out) const {
    for (uint64_t j = 0; j < d_.cols(); ++j) out[j] = d_.At(rows_[r], j);
    if (q_.empty()) return;
    std::array<double, kMaxLowRank> qr{};
    for (size_t t = 0; t < q_.size(); ++t) qr[t] = q_[t][r];
    for (uint64_t j = 0; j < d_.cols(); ++j) {
      const double* v = &vt_[j * stride_];
      for (size_t t = 0; t < q_.size(); ++t) out[j] -= qr[t] * v[t];
    }
  }

  // Adds direction q, which captures v (its energy: `captured`).
  void Add(std::vector<double> q, const std::vector<double>& v, double captured) {
    if (vt_.empty()) vt_.assign(d_.cols() * stride_, 0.0);
    for (uint64_t j = 0; j < d_.cols(); ++j) vt_[j * stride_ + q_.size()] = v[j];
    q_.push_back(std::move(q));
    captured_.push_back(captured);
  }

  // Drops the directions that capture no more than `energy`.
  void DropAtOrBelow(double energy) {
    size_t kept = 0;
    for (size_t t = 0; t < q_.size(); ++t) {
      if (captured_[t] <= energy) continue;
      if (kept != t) {
        q_[kept] = std::move(q_[t]);
        captured_[kept] = captured_[t];
        for (uint64_t j = 0; j < d_.cols(); ++j) {
          vt_[j * stride_ + kept] = vt_[j * stride_ + t];
        }
      }
      ++kept;
    }
    q_.resize(kept);
    captured_.resize(kept);
  }

  const std::vector<std::vector<double>>& q() const { return q_; }

 private:
  const UpdateView& d_;
  const std::vector<uint64_t>& rows_;
  std::vector<std::vector<double>> q_;
  size_t stride_;
  std::vector<double> vt_;  // cols x stride_
  std::vector<double> captured_;
};

// What the directions found so far leave (R), row by row. When R fits in kCachedResidualWords
// doubles it is decoded once and kept for the whole search: each round then only subtracts the
// directions added since, element by element in the order Directions::Residual uses, so the
// values are the same to the bit. Otherwise every row is recomputed whenever it is read.
class Residuals {
 public:
  Residuals(const Directions& found, uint64_t cols, size_t n)
      : found_(found), cols_(cols), n_(n), row_(cols) {
    if (n * cols <= kCachedResidualWords) {
      cache_.resize(n * cols);
      for (size_t r = 0; r < n; ++r) {
        found_.Residual(r, row_);
        std::copy(row_.begin(), row_.end(), cache_.begin() + r * cols);
      }
      cached_rank_ = found_.rank();
    }
  }

  // Takes the directions added since the last call out of the kept rows.
  void CatchUp() {
    if (cache_.empty()) return;
    for (size_t r = 0; r < n_; ++r) {
      double* row = &cache_[r * cols_];
      for (uint64_t j = 0; j < cols_; ++j) {
        for (size_t t = cached_rank_; t < found_.rank(); ++t) {
          row[j] -= found_.Q(t, r) * found_.V(t, j);
        }
      }
    }
    cached_rank_ = found_.rank();
  }

  // Row r of R (call CatchUp first after adding directions); valid until the next call.
  const double* Row(size_t r) {
    if (!cache_.empty()) return &cache_[r * cols_];
    found_.Residual(r, row_);
    return row_.data();
  }

  // R's energy.
  double Energy() {
    double e = 0;
    for (size_t r = 0; r < n_; ++r) {
      const double* row = Row(r);
      for (uint64_t j = 0; j < cols_; ++j) e += row[j] * row[j];
    }
    return e;
  }

 private:
  const Directions& found_;
  uint64_t cols_;
  size_t n_;
  std::vector<double> row_;
  std::vector<double> cache_;
  size_t cached_rank_ = 0;
};

// One round of the range finder over R: products with R in both directions, each one pass over
// the matrix.
class RangeRound {
 public:
  RangeRound(const Directions& found, Residuals& residuals, uint64_t cols, size_t n)
      : found_(found), residuals_(residuals), cols_(cols), n_(n) {
    residuals_.CatchUp();
  }

  // Row r of R.
  const double* Row(size_t r) { return residuals_.Row(r); }

  // Y = R * right (right: cols x kBlock, row-major), as kBlock columns over the rows; also
  // measures R's energy.
  std::array<std::vector<double>, kBlock> TimesRight(const std::vector<double>& right) {
    std::array<std::vector<double>, kBlock> y;
    for (auto& col : y) col.assign(n_, 0.0);
    energy_ = 0;
    for (size_t r = 0; r < n_; ++r) {
      const double* row = Row(r);
      std::array<double, kBlock> acc{};
      for (uint64_t j = 0; j < cols_; ++j) {
        const double x = row[j];
        energy_ += x * x;
        const double* w = &right[j * kBlock];
        for (size_t t = 0; t < kBlock; ++t) acc[t] += x * w[t];
      }
      for (size_t t = 0; t < kBlock; ++t) y[t][r] = acc[t];
    }
    return y;
  }

  // q^T R for each direction q of `block`, as cols x kBlock, row-major.
  std::vector<double> LeftTimes(const std::vector<std::vector<double>>& block) {
    std::vector<double> m(cols_ * kBlock, 0.0);
    for (size_t r = 0; r < n_; ++r) {
      const double* row = Row(r);
      std::array<double, kBlock> qr{};
      for (size_t t = 0; t < block.size(); ++t) qr[t] = block[t][r];
      for (uint64_t j = 0; j < cols_; ++j) {
        double* out = &m[j * kBlock];
        for (size_t t = 0; t < kBlock; ++t) out[t] += qr[t] * row[j];
      }
    }
    return m;
  }

  // The first `width` columns of y, orthonormal against the directions found and each other
  // (twice: one Gram-Schmidt pass leaves what rounding put back in); spanned ones are dropped.
  std::vector<std::vector<double>> Orthonormalize(std::array<std::vector<double>, kBlock> y,
                                                  size_t width) const {
    std::vector<std::vector<double>> block;
    for (size_t t = 0; t < width; ++t) {
      std::vector<double>& col = y[t];
      const double before = std::sqrt(Dot(col, col));
      for (int pass = 0; pass < 2; ++pass) {
        for (const std::vector<std::vector<double>>* qs : {&found_.q(), &std::as_const(block)}) {
          for (const auto& q : *qs) {
            const double c = Dot(q, col);
            for (size_t i = 0; i < n_; ++i) col[i] -= c * q[i];
          }
        }
      }
      const double norm = std::sqrt(Dot(col, col));
      if (!(norm > 1e-10 * before)) continue;
      for (double& x : col) x /= norm;
      block.push_back(std::move(col));
    }
    return block;
  }

  double energy() const { return energy_; }

 private:
  const Directions& found_;
  Residuals& residuals_;
  uint64_t cols_;
  size_t n_;
  double energy_ = 0;
};

// The randomized range finder over the rows `rows` of `d`: adds up to kBlock directions per
// round, keeps those that are signal, and stops at the first round that is not all signal, at
// `max_rank`, or after `max_rounds`. With `refine`, each round takes one power-iteration step:
// without it, the rounding noise of the merge tilts the directions found enough to leave some
// of the update behind (about 1e-10 of its energy, a hundred times the noise). Returns nullopt
// when the change is not finite.
std::optional<Directions> FindDirections(const UpdateView& d, const std::vector<uint64_t>& rows,
                                         uint32_t max_rank, int max_rounds, bool refine) {
  const uint64_t cols = d.cols();
  const size_t n = rows.size();
  const double dimensions = static_cast<double>(std::min<uint64_t>(n, cols));
  std::mt19937_64 rng(0x5eed1f0);
  std::normal_distribution<double> gaussian;
  std::vector<double> omega(cols * kBlock);
  Directions found(d, rows, max_rank);
  double rounding = 0;
  for (uint64_t row : rows) rounding += d.RoundingEnergy(row);
  const double rounding_per_direction = rounding / dimensions;
  Residuals residuals(found, cols, n);
  for (int round = 0; round < max_rounds && found.rank() < max_rank; ++round) {
    const size_t width = std::min<size_t>(kBlock, max_rank - found.rank());
    for (double& w : omega) w = gaussian(rng);
    RangeRound pass(found, residuals, cols, n);
    std::vector<std::vector<double>> block = pass.Orthonormalize(pass.TimesRight(omega), width);
    const double left = pass.energy();
    if (!std::isfinite(left)) return std::nullopt;
    if (block.empty() || left == 0) break;
    std::vector<double> measured = pass.LeftTimes(block);
    if (refine) {
      block = pass.Orthonormalize(pass.TimesRight(measured), block.size());
      if (block.empty()) break;
      measured = pass.LeftTimes(block);
    }
    // A direction is signal when it captures far more than the energy left once the whole round
    // is taken out would give each remaining dimension.
    std::vector<std::vector<double>> v(block.size(), std::vector<double>(cols));
    std::vector<double> captured(block.size(), 0.0);
    double round_captured = 0;
    for (size_t t = 0; t < block.size(); ++t) {
      for (uint64_t j = 0; j < cols; ++j) {
        v[t][j] = measured[j * kBlock + t];
        captured[t] += v[t][j] * v[t][j];
      }
      round_captured += captured[t];
    }
    const double noise_per_direction =
        std::max(rounding_per_direction,
                 std::max(left - round_captured, 0.0) /
                     std::max(1.0, dimensions - static_cast<double>(found.rank() + block.size())));
    bool all_signal = true;
    for (size_t t = 0; t < block.size(); ++t) {
      if (captured[t] > kSignalFactor * noise_per_direction) {
        found.Add(std::move(block[t]), v[t], captured[t]);
      } else {
        all_signal = false;
      }
    }
    if (!all_signal) break;
  }
  if (refine && found.rank() != 0) {
    // The test above measures the noise by subtraction, which cancellation blurs once nearly all
    // of an update is captured; measured directly, directions no better than noise are dropped.
    residuals.CatchUp();
    const double left = residuals.Energy();
    found.DropAtOrBelow(
        kFinalSignalFactor *
        std::max(rounding_per_direction,
                 left / std::max(1.0, dimensions - static_cast<double>(found.rank()))));
  }
  return found;
}

}  // namespace

bool LowRankShapeValid(uint64_t rows, uint64_t cols, uint32_t rank) {
  if (rows == 0 || cols == 0 || rank == 0 || rank > kMaxLowRank) return false;
  if (rows > kMaxLowRankFactorBytes || cols > kMaxLowRankFactorBytes) return false;
  return uint64_t{rank} * (rows + cols) * sizeof(float) <= kMaxLowRankFactorBytes;
}

std::optional<LowRankFactors> FindLowRankUpdate(std::string_view old_words,
                                                std::string_view new_words, int width,
                                                uint64_t rows) {
  if (rows == 0 || (width != 2 && width != 4) || old_words.size() != new_words.size() ||
      old_words.size() % width != 0) {
    return std::nullopt;
  }
  const uint64_t words = old_words.size() / width;
  if (words % rows != 0) return std::nullopt;
  const uint64_t cols = words / rows;
  if (rows < kMinDimension || cols < kMinDimension) return std::nullopt;
  // The factors must stay well below the tensor and within what a decoder accepts.
  const uint64_t budget = std::min(kMaxLowRankFactorBytes, old_words.size() / kMaxFactorShare);
  const auto max_rank = static_cast<uint32_t>(
      std::min<uint64_t>(kMaxLowRank, budget / (sizeof(float) * (rows + cols))));
  if (max_rank == 0) return std::nullopt;

  const UpdateView d(old_words, new_words, width, cols);
  // A probe (one round, no power step, at most kSampleRows rows) turns a fine-tune away for
  // half the cost of the first round of the full search.
  const uint64_t sampled = std::min(rows, kSampleRows);
  std::vector<uint64_t> sample(sampled);
  for (uint64_t s = 0; s < sampled; ++s) sample[s] = s * rows / sampled;
  std::optional<Directions> probe = FindDirections(d, sample, max_rank, 1, /*refine=*/false);
  if (!probe || probe->rank() == 0) return std::nullopt;
  std::vector<uint64_t> all(rows);
  for (uint64_t i = 0; i < rows; ++i) all[i] = i;
  std::optional<Directions> found =
      FindDirections(d, all, max_rank, kMaxLowRank / kBlock, /*refine=*/true);
  if (!found || found->rank() == 0) return std::nullopt;

  LowRankFactors f;
  f.width = width;
  f.rows = rows;
  f.cols = cols;
  f.rank = static_cast<uint32_t>(found->rank());
  f.u.resize(rows * f.rank);
  f.vt.resize(cols * f.rank);
  for (uint32_t t = 0; t < f.rank; ++t) {
    for (uint64_t i = 0; i < rows; ++i) f.u[i * f.rank + t] = static_cast<float>(found->Q(t, i));
    for (uint64_t j = 0; j < cols; ++j) f.vt[j * f.rank + t] = static_cast<float>(found->V(t, j));
  }
  for (const std::vector<float>* factor : {&f.u, &f.vt}) {
    for (float x : *factor) {
      if (!std::isfinite(x)) return std::nullopt;
    }
  }
  return f;
}

std::optional<LowRankFactors> HalfPrecisionFactors(const LowRankFactors& factors) {
  LowRankFactors half = factors;
  half.factor_width = 2;
  const uint32_t rank = factors.rank;
  for (uint32_t t = 0; t < rank; ++t) {
    float max_u = 0, max_v = 0;
    for (uint64_t i = 0; i < factors.rows; ++i) {
      max_u = std::max(max_u, std::fabs(half.u[i * rank + t]));
    }
    for (uint64_t j = 0; j < factors.cols; ++j) {
      max_v = std::max(max_v, std::fabs(half.vt[j * rank + t]));
    }
    if (max_u == 0 || max_v == 0) continue;
    const float scale = std::sqrt(max_v / max_u);
    for (uint64_t i = 0; i < factors.rows; ++i) half.u[i * rank + t] *= scale;
    for (uint64_t j = 0; j < factors.cols; ++j) half.vt[j * rank + t] /= scale;
  }
  for (std::vector<float>* factor : {&half.u, &half.vt}) {
    for (float& x : *factor) {
      const std::optional<uint32_t> bits = kFloat16.Round(x);
      if (!bits) return std::nullopt;
      x = static_cast<float>(kFloat16.Value(*bits));
    }
  }
  return half;
}

uint16_t Float16Bits(float value) {
  return static_cast<uint16_t>(kFloat16.Round(value).value_or(0x7c00));
}

float Float16Value(uint16_t bits) {
  if (!kFloat16.Finite(bits)) return std::numeric_limits<float>::quiet_NaN();
  return static_cast<float>(kFloat16.Value(bits));
}

uint32_t PredictLowRankWord(const LowRankFactors& factors, uint32_t old_bits, uint64_t index) {
  const float* u = &factors.u[index / factors.cols * factors.rank];
  const float* v = &factors.vt[index % factors.cols * factors.rank];
  double change = 0;
  for (uint32_t t = 0; t < factors.rank; ++t) {
    change += static_cast<double>(u[t]) * static_cast<double>(v[t]);
  }
  return PredictedWord(FormatOf(factors.width), old_bits, change);
}

void PredictLowRankWords(const LowRankFactors& factors, const char* old_words, uint64_t first,
                         uint64_t count, char* predicted_words) {
  const FloatFormat& format = FormatOf(factors.width);
  const uint32_t rank = factors.rank;
  std::vector<double> change;
  // A row's words at a time, the rank loop outside: each word still sums its products in the
  // same order as PredictLowRankWord (the same bits), but the words' sums no longer wait on each
  // other.
  for (uint64_t i = 0; i < count;) {
    const uint64_t row = (first + i) / factors.cols;
    const uint64_t col = (first + i) % factors.cols;
    const uint64_t n = std::min(factors.cols - col, count - i);
    change.assign(n, 0.0);
    for (uint32_t t = 0; t < rank; ++t) {
      const double u = factors.u[row * rank + t];
      const float* v = &factors.vt[col * rank + t];
      for (uint64_t k = 0; k < n; ++k) change[k] += u * static_cast<double>(v[k * rank]);
    }
    for (uint64_t k = 0; k < n; ++k) {
      StoreWord(predicted_words + (i + k) * factors.width, factors.width,
                PredictedWord(format, WordAt(old_words, factors.width, i + k), change[k]));
    }
    i += n;
  }
}

}  // namespace edgefleet::delta::internal
