// Tests of what the tensor codec knows about weights: the predicting transforms (magnitude
// pruning, quantization grids) must invert exactly on every bit pattern, the detectors must
// recover the pruning threshold and the quantizer's scale from the tensors alone, and the byte
// planes must round-trip dense or sparse. Then, through the codec: a pruned or quantized model
// costs a patch of a few hundred bytes.
#include "common/delta/internal/tensor_transforms.h"

#include <zstd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/delta/delta.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/patch_stream.h"
#include "common/delta/internal/tensor_planes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/delta/test_weights.h"

namespace edgefleet::delta::internal {
namespace {

float MaxAbs(const std::vector<float>& w) {
  float m = 0;
  for (float v : w) m = std::max(m, std::fabs(v));
  return m;
}

// Symmetric per-tensor int8 fake quantization in float32 arithmetic, as ONNX QDQ does it.
std::vector<float> QuantizeFloat32(const std::vector<float>& w, int levels = 127) {
  const float scale = MaxAbs(w) / static_cast<float>(levels);
  std::vector<float> q(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const float k = std::clamp(std::nearbyint(w[i] / scale), -float(levels), float(levels));
    q[i] = k * scale;
  }
  return q;
}

// The same in double arithmetic with a double scale (numpy float64 style, then cast).
std::vector<float> QuantizeFloat64(const std::vector<float>& w, int levels = 127) {
  const double scale = static_cast<double>(MaxAbs(w)) / levels;
  std::vector<float> q(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double k = std::clamp(std::nearbyint(w[i] / scale), -double(levels), double(levels));
    q[i] = static_cast<float>(k * scale);
  }
  return q;
}

// Asymmetric uint8 quantization with a zero point: values are (q - zp) * scale.
std::vector<float> QuantizeAsymmetricUint8(const std::vector<float>& w) {
  const float lo = *std::min_element(w.begin(), w.end());
  const float hi = *std::max_element(w.begin(), w.end());
  const float scale = (hi - lo) / 255.0f;
  const float zero_point = std::nearbyint(-lo / scale);
  std::vector<float> q(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const float code = std::clamp(std::nearbyint(w[i] / scale) + zero_point, 0.0f, 255.0f);
    q[i] = (code - zero_point) * scale;
  }
  return q;
}

size_t Mispredicted(const WordTransform& coder, const std::vector<float>& old_w,
                    const std::vector<float>& new_w) {
  size_t wrong = 0;
  for (size_t i = 0; i < old_w.size(); ++i) {
    const uint64_t ow = std::bit_cast<uint32_t>(old_w[i]);
    const uint64_t nw = std::bit_cast<uint32_t>(new_w[i]);
    if (coder.Forward(ow, nw) != 0) ++wrong;
  }
  return wrong;
}

TEST(TensorTransformsTest, EveryTransformInvertsOnEveryKindOfWord) {
  std::mt19937_64 rng(11);
  std::vector<uint32_t> specials = {0,           0x80000000u, 0x7f800000u, 0xff800000u,
                                    0x7fc00000u, 0xffc00001u, 0x00000001u, 0x80000001u,
                                    0x7f7fffffu, 0xff7fffffu, 0x3f800000u, 0xbf800000u};
  TransformParams prune;
  prune.prune_threshold = 0x3c000000u;
  TransformParams prune_signed = prune;
  prune_signed.prune_keeps_sign = true;
  TransformParams grid;
  grid.grid_step = 0.0078125;
  grid.grid_min = -128;
  grid.grid_max = 127;
  TransformParams huge_grid;  // products beyond float range must not break the inverse
  huge_grid.grid_step = 1e38;
  huge_grid.grid_min = -kMaxGridCode;
  huge_grid.grid_max = kMaxGridCode;
  struct Case {
    WordTransform coder;
    int width;
  };
  const std::vector<Case> cases = {
      {WordTransform(Transform::kXor, 4), 4},
      {WordTransform(Transform::kZigzagSub, 4), 4},
      {WordTransform(Transform::kZigzagSub, 2), 2},
      {WordTransform(Transform::kZigzagSub, 1), 1},
      {WordTransform(Transform::kLiteral, 4), 4},
      {WordTransform(Transform::kXorZero, 4), 4},
      {WordTransform(Transform::kXorZero, 1), 1},
      {WordTransform(Transform::kPruneXor, 4, prune), 4},
      {WordTransform(Transform::kPruneXor, 4, prune_signed), 4},
      {WordTransform(Transform::kGridXor, 4, grid), 4},
      {WordTransform(Transform::kGridXor, 4, huge_grid), 4},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.coder.transform()));
    const uint64_t mask = (uint64_t{1} << (8 * c.width)) - 1;
    for (int i = 0; i < 20000; ++i) {
      uint64_t ow = i < 144 ? specials[i % 12] : rng();
      uint64_t nw = i < 144 ? specials[i / 12] : rng();
      if (i >= 144 && i % 3 == 0) nw = ow ^ (rng() & 0xff);  // near misses
      ow &= mask;
      nw &= mask;
      const uint64_t stored = c.coder.Forward(ow, nw);
      ASSERT_EQ(c.coder.Reconstruct(ow, stored), nw) << std::hex << ow << " " << nw;
    }
  }
}

TEST(TensorTransformsTest, DecoderAcceptsOnlySaneParameters) {
  TransformParams grid;
  grid.grid_step = 0.01;
  grid.grid_min = -127;
  grid.grid_max = 127;
  EXPECT_TRUE(TransformParamsValid(Transform::kGridXor, 4, grid));
  EXPECT_FALSE(TransformParamsValid(Transform::kGridXor, 2, grid)) << "float32 words only";
  for (double bad : {0.0, -0.01, std::nan(""), std::numeric_limits<double>::infinity(), 1e-310}) {
    TransformParams p = grid;
    p.grid_step = bad;
    EXPECT_FALSE(TransformParamsValid(Transform::kGridXor, 4, p)) << bad;
  }
  TransformParams reversed = grid;
  std::swap(reversed.grid_min, reversed.grid_max);
  EXPECT_FALSE(TransformParamsValid(Transform::kGridXor, 4, reversed));
  TransformParams wide = grid;
  wide.grid_max = kMaxGridCode + 1;
  EXPECT_FALSE(TransformParamsValid(Transform::kGridXor, 4, wide));
  TransformParams prune;
  prune.prune_threshold = 0x80000000u;
  EXPECT_FALSE(TransformParamsValid(Transform::kPruneXor, 4, prune));
  prune.prune_threshold = 0x3f000000u;
  EXPECT_TRUE(TransformParamsValid(Transform::kPruneXor, 4, prune));
  EXPECT_FALSE(TransformParamsValid(Transform::kPruneXor, 1, prune));
}

TEST(TensorTransformsTest, GridDetectionRecoversTheQuantizersScale) {
  const std::vector<float> w = Weights(100000, 1);
  {
    // float32 arithmetic (ONNX QuantizeLinear/DequantizeLinear): the scale itself is found and
    // every weight is predicted exactly from the unquantized one.
    const std::vector<float> q = QuantizeFloat32(w);
    std::optional<TransformParams> grid = DetectGrid(Bytes(q));
    ASSERT_TRUE(grid.has_value());
    EXPECT_EQ(grid->grid_step, static_cast<double>(MaxAbs(w) / 127.0f));
    EXPECT_EQ(grid->grid_max, 127);
    EXPECT_LE(Mispredicted(WordTransform(Transform::kGridXor, 4, *grid), w, q), 10u);
  }
  {
    // float64 arithmetic with a float64 scale: a step that reproduces nearly every value.
    const std::vector<float> q = QuantizeFloat64(w);
    std::optional<TransformParams> grid = DetectGrid(Bytes(q));
    ASSERT_TRUE(grid.has_value());
    EXPECT_LE(Mispredicted(WordTransform(Transform::kGridXor, 4, *grid), w, q), w.size() / 1000);
  }
  {
    // Asymmetric uint8 with a zero point is still a grid of integer multiples of the scale.
    const std::vector<float> q = QuantizeAsymmetricUint8(w);
    std::optional<TransformParams> grid = DetectGrid(Bytes(q));
    ASSERT_TRUE(grid.has_value());
    EXPECT_LE(Mispredicted(WordTransform(Transform::kGridXor, 4, *grid), w, q), w.size() / 100);
  }
  {
    // 4-bit.
    const std::vector<float> q = QuantizeFloat32(w, 7);
    std::optional<TransformParams> grid = DetectGrid(Bytes(q));
    ASSERT_TRUE(grid.has_value());
    EXPECT_EQ(grid->grid_max, 7);
    EXPECT_EQ(grid->grid_min, -7);
  }
  EXPECT_FALSE(DetectGrid(Bytes(w)).has_value()) << "unquantized weights are not a grid";
  EXPECT_FALSE(DetectGrid(Bytes(std::vector<float>(1000, 0.0f))).has_value());
  std::vector<float> with_nan = QuantizeFloat32(w);
  with_nan[5000] = std::nanf("");
  EXPECT_FALSE(DetectGrid(Bytes(with_nan)).has_value());
}

TEST(TensorTransformsTest, PruneDetectionFindsTheMagnitudeThresholdAndZeroSign) {
  const std::vector<float> w = Weights(50000, 2);
  std::vector<float> magnitudes(w.size());
  for (size_t i = 0; i < w.size(); ++i) magnitudes[i] = std::fabs(w[i]);
  std::nth_element(magnitudes.begin(), magnitudes.begin() + w.size() * 3 / 10, magnitudes.end());
  const float cut = magnitudes[w.size() * 3 / 10];
  std::vector<float> pruned(w), masked(w);
  for (size_t i = 0; i < w.size(); ++i) {
    if (std::fabs(w[i]) < cut) {
      pruned[i] = 0.0f;         // np.where(..., 0, w)
      masked[i] = w[i] * 0.0f;  // w * mask: negative weights become -0.0
    }
  }
  std::optional<TransformParams> p = DetectPruneThreshold(Bytes(w), Bytes(pruned));
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->prune_keeps_sign);
  EXPECT_LT(std::bit_cast<float>(p->prune_threshold), cut);
  EXPECT_EQ(Mispredicted(WordTransform(Transform::kPruneXor, 4, *p), w, pruned), 0u);

  std::optional<TransformParams> m = DetectPruneThreshold(Bytes(w), Bytes(masked));
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->prune_keeps_sign);
  EXPECT_EQ(Mispredicted(WordTransform(Transform::kPruneXor, 4, *m), w, masked), 0u);

  std::vector<float> tuned(w);
  for (float& v : tuned) v *= 1.001f;
  EXPECT_FALSE(DetectPruneThreshold(Bytes(w), Bytes(tuned)).has_value());
}

std::string ReadPlane(PlaneReader& reader, size_t total, size_t chunk) {
  std::string out(total, '\x7f');
  for (size_t at = 0; at < total; at += chunk) {
    const absl::Status s = reader.Read(out.data() + at, std::min(chunk, total - at));
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

std::unique_ptr<PlaneReader> Reader(const EncodedPlane& plane) {
  return plane.sparse ? PlaneReader::Sparse("plane", plane.gaps, plane.values, 21)
                      : PlaneReader::Dense("plane", plane.dense, 21);
}

TEST(TensorPlanesTest, SparsePlanesAreChosenWhenFewBytesChangeAndRoundTrip) {
  std::mt19937 rng(5);
  std::string sparse(1 << 20, '\0');
  for (int i = 0; i < 20000; ++i) sparse[rng() % sparse.size()] = static_cast<char>(1 + rng() % 3);
  sparse.back() = 0;  // trailing zeros are implied
  std::string dense(1 << 16, '\0');
  for (char& c : dense) c = static_cast<char>(rng());
  for (const std::string* plane : {&sparse, &dense}) {
    absl::StatusOr<EncodedPlane> encoded = EncodePlane(*plane, 19, 21);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(encoded->sparse, plane == &sparse);
    for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, plane->size()}) {
      std::unique_ptr<PlaneReader> reader = Reader(*encoded);
      EXPECT_TRUE(ReadPlane(*reader, plane->size(), chunk) == *plane) << chunk;
      EXPECT_TRUE(reader->ExpectEnd().ok());
    }
  }
  // Smaller than zstd's best on the same bytes: a run length costs bits per change.
  absl::StatusOr<std::string> zstd19 = CompressFrame(sparse, 19, 21);
  ASSERT_TRUE(zstd19.ok());
  EXPECT_LT(EncodePlane(sparse, 19, 21)->size(), zstd19->size() * 9 / 10);
  EXPECT_EQ(EncodePlane(std::string(1 << 20, '\0'), 19, 21)->size(), 0u)
      << "an all-zero plane costs nothing";
}

TEST(TensorPlanesTest, SparseReaderRefusesPlanesThatDisagreeWithTheTable) {
  std::string gaps, values = "\x05\x06";
  PutVarint(gaps, 10);
  PutVarint(gaps, 3);
  auto frame = [](std::string_view raw) {
    std::string out(ZSTD_compressBound(raw.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 3));
    return out;
  };
  // Readers view the frames: keep them alive.
  const std::string gaps_frame = frame(gaps), values_frame = frame(values);
  const std::string one_value = frame("\x05"), one = frame("\x01");
  {
    // The table asks for fewer bytes than the plane holds.
    std::unique_ptr<PlaneReader> reader =
        PlaneReader::Sparse("plane", gaps_frame, values_frame, 21);
    std::string out(12, '\0');
    const absl::Status read = reader->Read(out.data(), out.size());
    ASSERT_TRUE(read.ok()) << read.ToString();
    EXPECT_EQ(out, std::string(10, '\0') + "\x05" + std::string(1, '\0'));
    EXPECT_THAT(std::string(reader->ExpectEnd().message()), ::testing::HasSubstr("longer"));
  }
  {
    // A gap without its value.
    std::unique_ptr<PlaneReader> reader = PlaneReader::Sparse("plane", gaps_frame, one_value, 21);
    std::string out(20, '\0');
    EXPECT_FALSE(reader->Read(out.data(), out.size()).ok());
  }
  {
    // A run of 2^62 zeros is only ever produced as far as the table asks.
    std::string huge;
    PutVarint(huge, uint64_t{1} << 62);
    const std::string huge_frame = frame(huge);
    std::unique_ptr<PlaneReader> reader = PlaneReader::Sparse("plane", huge_frame, one, 21);
    std::string out(1000, '\x7f');
    ASSERT_TRUE(reader->Read(out.data(), out.size()).ok());
    EXPECT_EQ(out, std::string(1000, '\0'));
    EXPECT_FALSE(reader->ExpectEnd().ok());
  }
}

uint64_t CodecRoundTrip(std::string_view old_data, std::string_view new_data) {
  StringSink payload;
  DiffOptions options;
  absl::Status encoded = TensorEncode(old_data, new_data, payload, options);
  EXPECT_TRUE(encoded.ok()) << encoded;
  StringSink out;
  absl::Status decoded = TensorDecode(old_data, payload.data(), new_data.size(), out);
  EXPECT_TRUE(decoded.ok()) << decoded;
  EXPECT_TRUE(out.data() == new_data) << "decoded bytes differ from the new weights";
  return payload.data().size();
}

TEST(TensorTransformsTest, PrunedAndQuantizedWeightsCostAlmostNothing) {
  // Raw float32 weight files (same length: aligned by offset), 1 MB each.
  const std::vector<float> w = Weights(256 * 1024, 3);
  std::vector<float> pruned(w);
  for (float& v : pruned) {
    if (std::fabs(v) < 0.03f) v = 0.0f;
  }
  std::vector<float> pruned_tuned(pruned);
  std::mt19937 rng(4);
  std::normal_distribution<float> noise(0.0f, 1e-3f);
  for (float& v : pruned_tuned) v *= 1.0f + noise(rng);
  const std::string old_bytes = Bytes(w);
  EXPECT_LT(CodecRoundTrip(old_bytes, Bytes(pruned)), 1000u);
  EXPECT_LT(CodecRoundTrip(old_bytes, Bytes(QuantizeFloat32(w))), 1000u);
  EXPECT_LT(CodecRoundTrip(old_bytes, Bytes(QuantizeFloat64(w))), 20000u);
  EXPECT_LT(CodecRoundTrip(old_bytes, Bytes(QuantizeAsymmetricUint8(w))), 20000u);
  // Pruned, then fine-tuned: the survivors' changes cost what a fine-tune costs, the pruned
  // ones nothing.
  const uint64_t tuned_only = CodecRoundTrip(old_bytes, Bytes(pruned_tuned));
  EXPECT_LT(tuned_only, old_bytes.size() / 2);
}

}  // namespace
}  // namespace edgefleet::delta::internal
