// The tensor codec: fine-tuning moves every weight a little, so byte matching finds nothing,
// but the bit patterns of old and new weights share their sign, exponent and high mantissa bits.
// Aligned tensors are XOR-ed (or subtracted) word by word, the words' bytes are split into planes
// (all most-significant bytes together, ...) and each plane is zstd-compressed; everything else
// (graph structure, tensors without an old counterpart) is a residual coded against the old file.
//
// Payload (varints are LEB128):
//   "EFT" 0x04, u8 residual coder (0 = zstd with a prefix of old bytes, 1 = match-zstd on old),
//   varint residual length, varint sparse-plane mask (bit p: plane p is sparse), varint section
//   sizes: table, each plane (two for a sparse one: gaps, values), residual; then the sections.
//   Version 0x03 stores low-rank factors as float32 only, 0x02 has no low-rank regions and 0x01
//   also no mask (every plane dense); all are still decoded.
// Table (one zstd frame, read incrementally): varint prefix range count, per range varint gap
// from the previous range's end and varint length; varint region count, per region varint
// residual bytes before it, varint length, varint mode (width code | transform << 2) and, unless
// literal, varint zigzag(old offset - previous old end), then the transform's parameters
// (prune: threshold | keeps_sign << 31; grid: the step's IEEE-754 bits, zigzag(min), zigzag(max);
// low rank, on float32 or float16 words: varint rank r, varint rows, varint factor width (4:
// float32, 2: float16), then U (rows x r) and V^T (cols x r) in that format).
// Residual bytes after the last region end the file. Planes: stream 0 = width 1; 1, 2 = width 2;
// 3..6 = width 4; byte k of each little-endian word goes to the width's k-th stream, regions in
// table order.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/low_rank.h"
#include "common/delta/internal/onnx_layout.h"
#include "common/delta/internal/patch_stream.h"
#include "common/delta/internal/tensor_planes.h"
#include "common/delta/internal/tensor_transforms.h"

namespace edgefleet::delta::internal {
namespace {

constexpr char kMagic[3] = {'E', 'F', 'T'};
constexpr uint8_t kVersionDensePlanes = 1;
constexpr uint8_t kVersionNoLowRank = 2;
constexpr uint8_t kVersionFloat32Factors = 3;
constexpr uint8_t kVersion = 4;
static_assert(kVersion == kDecoderFormatVersion,
              "a new tensor payload version is a new decoder version");
constexpr int kPlaneCount = 7;
constexpr int kResidualZstdPrefix = 0;
constexpr int kResidualMatchZstd = 1;

// Decoder memory bounds: every zstd stream is refused beyond this window, the prefix dictionary
// is at most kMaxPrefixBytes, and tensors are rebuilt kChunkBytes at a time.
constexpr int kMaxWindowLog = 22;
constexpr int kMaxPlaneWindowLog = 21;
// Planes are noise or runs: a longer window finds nothing more (measured on the benchmark
// corpus: the same patches at 2^17 as at 2^21; 2^16 adds up to 0.5%) and costs the device a
// window of memory per plane stream.
constexpr int kPlaneWindowLog = 17;
// The table carries low-rank factors (up to kMaxLowRankFactorBytes a tensor), which never repeat:
// a short window keeps the decoder's buffer for it small.
constexpr int kTableWindowLog = 18;
// Searching for a low-rank update costs a probe, then four passes over the tensor per eight
// directions; it is tried only where the best per-weight code still pays this much per weight
// (a dense change).
constexpr double kLowRankMinBitsPerWord = 2;
constexpr size_t kMaxPrefixBytes = size_t{1} << 20;
// Threads planning regions at once; each low-rank search may keep up to 64 MiB of residual.
constexpr unsigned kMaxPlanThreads = 4;
constexpr size_t kChunkBytes = size_t{64} << 10;
static_assert(kChunkBytes <= OldSource::kMaxReadBytes);
// The residual is also tried with match-zstd (suffix sorting the old file) only when it is big
// enough for structure-only prefix coding to be likely worse.
constexpr size_t kMatchZstdResidualThreshold = size_t{256} << 10;
constexpr int32_t kOnnxFloat = 1;
constexpr int32_t kOnnxFloat16 = 10;

int FirstPlane(int width) { return width == 1 ? 0 : width == 2 ? 1 : 3; }

int WidthCode(int width) { return width == 1 ? 0 : width == 2 ? 1 : 2; }

// ---------------------------------------------------------------------------------------------
// Encoder

struct Region {
  uint64_t new_offset = 0;
  uint64_t length = 0;
  int width = 1;
  bool float32 = false;  // float32 words: the predicting transforms apply
  bool float16 = false;  // float16 words: the low-rank prediction applies
  Transform transform = Transform::kXor;
  TransformParams params;
  uint64_t old_offset = 0;  // unused for kLiteral
  uint64_t rows = 0;        // dims[0] of a matrix: where per-channel quantization would split
  std::shared_ptr<const LowRankFactors> low_rank;  // kLowRankSub only

  WordTransform coder() const { return WordTransform(transform, width, params); }
};

// The word a region's transform sees in place of word `i`'s old word: the old word, or its
// low-rank prediction.
uint64_t ReferenceWord(std::string_view old_data, const Region& r, uint64_t i) {
  if (r.transform == Transform::kLiteral) return 0;
  const uint64_t ow = LoadWord(old_data.data() + r.old_offset + i * r.width, r.width);
  return r.low_rank ? PredictLowRankWord(*r.low_rank, static_cast<uint32_t>(ow), i) : ow;
}

struct ByteRange {
  uint64_t offset;
  uint64_t length;
};

// Sorted, in-bounds, non-overlapping ranges; anything else in a hostile layout is dropped.
std::vector<TensorRange> CleanLayout(std::vector<TensorRange> layout, uint64_t file_size) {
  std::sort(layout.begin(), layout.end(),
            [](const TensorRange& a, const TensorRange& b) { return a.offset < b.offset; });
  std::vector<TensorRange> clean;
  uint64_t end = 0;
  for (TensorRange& t : layout) {
    if (t.length == 0 || t.offset < end || t.offset > file_size ||
        t.length > file_size - t.offset) {
      continue;
    }
    end = t.offset + t.length;
    clean.push_back(std::move(t));
  }
  return clean;
}

int RangeWidth(const TensorRange& t) {
  const int width = t.field == 9 ? WordWidthForDataType(t.data_type) : 4;
  return t.length % width == 0 ? width : 1;
}

// c * log2(c): the planning estimates sum it over every histogram bin of every candidate, and
// most counts are small, so those come from a table (log2 dominated per-row planning).
double CountTimesLog2(uint64_t c) {
  constexpr size_t kTableSize = 4096;
  static const std::array<double, kTableSize> table = [] {
    std::array<double, kTableSize> t{};
    for (size_t i = 1; i < kTableSize; ++i) t[i] = static_cast<double>(i) * std::log2(i);
    return t;
  }();
  return c < kTableSize ? table[c] : static_cast<double>(c) * std::log2(static_cast<double>(c));
}

// Estimated bits for the plane bytes of one region under its transform (order-0 entropy per
// plane, from a sample scaled to the whole region), plus its low-rank factors if any.
double EstimateBits(std::string_view old_data, std::string_view new_data, const Region& r) {
  const WordTransform coder = r.coder();
  std::array<std::array<uint64_t, 256>, 4> hist{};
  const uint64_t words = r.length / r.width;
  // Large tensors are sampled: the choice needs the statistics, not every word.
  const uint64_t step = std::max<uint64_t>(1, words / 65536);
  uint64_t n = 0;
  for (uint64_t i = 0; i < words; i += step, ++n) {
    const uint64_t nw = LoadWord(new_data.data() + r.new_offset + i * r.width, r.width);
    const uint64_t d = coder.Forward(ReferenceWord(old_data, r, i), nw);
    for (int k = 0; k < r.width; ++k) ++hist[k][(d >> (8 * k)) & 0xff];
  }
  // Sum of c * log2(n / c) over the bins of each plane.
  double bits = r.width * CountTimesLog2(n);
  for (int k = 0; k < r.width; ++k) {
    for (uint64_t c : hist[k]) bits -= CountTimesLog2(c);
  }
  bits *= static_cast<double>(words) / static_cast<double>(std::max<uint64_t>(n, 1));
  if (r.low_rank) {
    bits += 8.0 * r.low_rank->factor_width *
            static_cast<double>(r.low_rank->u.size() + r.low_rank->vt.size());
  }
  return bits;
}

// Picks the transform whose planes look cheapest, trying the predictions that the tensors'
// values suggest (a pruning threshold, a quantization grid); returns its estimated bits.
// `known_grid`, when given, is DetectGrid's answer for the region, already computed.
double ChooseTransform(std::string_view old_data, std::string_view new_data, Region& r,
                       const std::optional<TransformParams>* known_grid = nullptr) {
  std::vector<Region> candidates;
  for (Transform t : {Transform::kXor, Transform::kZigzagSub, Transform::kXorZero}) {
    Region c = r;
    c.transform = t;
    candidates.push_back(c);
  }
  if (r.float32 && r.width == 4) {
    const std::string_view old_words = old_data.substr(r.old_offset, r.length);
    const std::string_view new_words = new_data.substr(r.new_offset, r.length);
    if (std::optional<TransformParams> prune = DetectPruneThreshold(old_words, new_words)) {
      Region c = r;
      c.transform = Transform::kPruneXor;
      c.params = *prune;
      candidates.push_back(c);
    }
    if (const std::optional<TransformParams> grid =
            known_grid ? *known_grid : DetectGrid(new_words)) {
      Region c = r;
      c.transform = Transform::kGridXor;
      c.params = *grid;
      candidates.push_back(c);
    }
  }
  double best = std::numeric_limits<double>::infinity();
  for (const Region& c : candidates) {
    const double bits = EstimateBits(old_data, new_data, c);
    if (bits < best) {
      best = bits;
      r = c;
    }
  }
  return best;
}

// A dense change to a matrix may be a merged adapter: takes the low-rank prediction, with float32
// or float16 factors, when it beats `best` bits, the estimate of the transform `r` has.
void TryLowRank(std::string_view old_data, std::string_view new_data, Region& r, double best) {
  if (((r.float32 && r.width == 4) || (r.float16 && r.width == 2)) && r.rows != 0 &&
      best > kLowRankMinBitsPerWord * static_cast<double>(r.length / r.width)) {
    std::optional<LowRankFactors> factors =
        FindLowRankUpdate(old_data.substr(r.old_offset, r.length),
                          new_data.substr(r.new_offset, r.length), r.width, r.rows);
    if (!factors) return;
    std::optional<LowRankFactors> half = HalfPrecisionFactors(*factors);
    for (std::optional<LowRankFactors>* candidate : {&factors, &half}) {
      if (!*candidate) continue;
      Region c = r;
      c.transform = Transform::kLowRankSub;
      c.params = {};
      c.low_rank = std::make_shared<const LowRankFactors>(**std::move(candidate));
      const double bits = EstimateBits(old_data, new_data, c);
      if (bits < best) {
        best = bits;
        r = std::move(c);
      }
    }
  }
}

// Per-channel quantization (one scale per output channel, as QDQ exporters do for weights) puts
// each row of a matrix on its own grid: when at least half the rows are on one, the tensor becomes
// one region per row, each with its own transform. Appends the rows to `out` and returns true, or
// leaves `out` alone.
bool SplitPerChannelGrid(std::string_view old_data, std::string_view new_data, const Region& r,
                         std::vector<Region>& out) {
  if (!r.float32 || r.transform == Transform::kLiteral || r.rows == 0 || r.length % r.rows != 0) {
    return false;
  }
  const uint64_t row_bytes = r.length / r.rows;
  if (row_bytes % 4 != 0) return false;
  std::vector<std::optional<TransformParams>> grids(r.rows);
  uint64_t on_grid = 0;
  for (uint64_t i = 0; i < r.rows; ++i) {
    grids[i] = DetectGrid(new_data.substr(r.new_offset + i * row_bytes, row_bytes));
    if (grids[i]) ++on_grid;
  }
  if (on_grid * 2 < r.rows) return false;
  for (uint64_t i = 0; i < r.rows; ++i) {
    Region row = r;
    row.new_offset = r.new_offset + i * row_bytes;
    row.old_offset = r.old_offset + i * row_bytes;
    row.length = row_bytes;
    row.rows = 0;
    ChooseTransform(old_data, new_data, row, &grids[i]);
    out.push_back(row);
  }
  return true;
}

// One aligned region's coding: its transform, or one region per row (per-channel grids), or a
// low-rank prediction.
std::vector<Region> PlanRegion(std::string_view old_data, std::string_view new_data, Region r) {
  std::vector<Region> out;
  if (r.transform == Transform::kLiteral) {
    out.push_back(r);
    return out;
  }
  const double bits = ChooseTransform(old_data, new_data, r);
  // Per-channel grids first: a quantized matrix changes at full rank, so the low-rank search
  // would only cost time.
  if (r.transform != Transform::kGridXor && SplitPerChannelGrid(old_data, new_data, r, out)) {
    return out;
  }
  TryLowRank(old_data, new_data, r, bits);
  out.push_back(r);
  return out;
}

struct Plan {
  std::vector<Region> regions;    // sorted by new_offset
  std::vector<ByteRange> prefix;  // old bytes that seed the residual's zstd window
};

// Which new bytes are coded against which old bytes, before any transform is chosen: tensors
// aligned by name (then renamed ones by size and word width), or raw weight files by offset; the
// rest is residual, seeded with old structure.
Plan AlignRegions(std::string_view old_data, std::string_view new_data) {
  Plan plan;
  auto old_layout = ParseOnnxLayout(old_data);
  auto new_layout = ParseOnnxLayout(new_data);
  if (old_layout.ok() && new_layout.ok() && !new_layout->empty()) {
    const std::vector<TensorRange> olds = CleanLayout(*std::move(old_layout), old_data.size());
    const std::vector<TensorRange> news = CleanLayout(*std::move(new_layout), new_data.size());
    std::map<std::string, size_t> by_name;
    for (size_t i = 0; i < olds.size(); ++i) {
      by_name.emplace(absl::StrCat(olds[i].name, "#", olds[i].field), i);
    }
    std::vector<bool> old_used(olds.size(), false);
    std::vector<std::optional<size_t>> match(news.size());
    for (size_t i = 0; i < news.size(); ++i) {
      auto it = by_name.find(absl::StrCat(news[i].name, "#", news[i].field));
      if (it != by_name.end() && !old_used[it->second] &&
          olds[it->second].length == news[i].length &&
          RangeWidth(olds[it->second]) == RangeWidth(news[i])) {
        match[i] = it->second;
        old_used[it->second] = true;
      }
    }
    // Renamed tensors: pair the leftovers by size and word width, in file order.
    std::map<std::pair<uint64_t, int>, std::vector<size_t>> leftovers;
    for (size_t j = olds.size(); j-- > 0;) {
      if (!old_used[j]) leftovers[{olds[j].length, RangeWidth(olds[j])}].push_back(j);
    }
    for (size_t i = 0; i < news.size(); ++i) {
      if (match[i]) continue;
      auto it = leftovers.find({news[i].length, RangeWidth(news[i])});
      if (it == leftovers.end() || it->second.empty()) continue;
      match[i] = it->second.back();
      it->second.pop_back();
    }
    for (size_t i = 0; i < news.size(); ++i) {
      Region r;
      r.new_offset = news[i].offset;
      r.length = news[i].length;
      r.width = RangeWidth(news[i]);
      // float_data (field 4) holds float32 whatever the data type says.
      r.float32 = r.width == 4 && (news[i].data_type == kOnnxFloat || news[i].field == 4);
      if (news[i].dims.size() >= 2 && news[i].dims[0] > 1) {
        r.rows = static_cast<uint64_t>(news[i].dims[0]);
      }
      if (match[i]) {
        r.old_offset = olds[*match[i]].offset;
        r.float32 =
            r.float32 && (olds[*match[i]].data_type == kOnnxFloat || olds[*match[i]].field == 4);
        r.float16 = r.width == 2 && news[i].data_type == kOnnxFloat16 &&
                    olds[*match[i]].data_type == kOnnxFloat16 && news[i].field == 9;
      } else if (r.width > 1) {
        r.transform = Transform::kLiteral;  // byte planes still beat zstd on raw floats
      } else {
        continue;  // stays residual, where match-zstd can still find it
      }
      plan.regions.push_back(r);
    }
    // Old structure (everything but tensor bytes) seeds the residual's window.
    uint64_t pos = 0;
    size_t budget = kMaxPrefixBytes;
    auto add_prefix = [&](uint64_t from, uint64_t to) {
      const uint64_t len = std::min<uint64_t>(to - from, budget);
      if (len == 0) return;
      plan.prefix.push_back({from, len});
      budget -= len;
    };
    for (const TensorRange& t : olds) {
      add_prefix(pos, t.offset);
      pos = t.offset + t.length;
    }
    add_prefix(pos, old_data.size());
  } else if (old_data.size() == new_data.size() && new_data.size() >= 4) {
    // Raw weight files: same length means the same layout; align by offset as float32.
    Region r;
    r.length = new_data.size() & ~uint64_t{3};
    r.width = 4;
    r.float32 = true;
    plan.regions.push_back(r);
    plan.prefix.push_back({0, std::min<uint64_t>(old_data.size(), kMaxPrefixBytes)});
  } else if (!old_data.empty()) {
    plan.prefix.push_back({0, std::min<uint64_t>(old_data.size(), kMaxPrefixBytes)});
  }
  return plan;
}

// Whether the residual is also tried with match-zstd: when it is big enough for structure-only
// prefix coding to be likely worse, or when nothing aligned and old is more than the prefix.
bool ResidualTriesMatching(uint64_t residual_bytes, bool no_regions, uint64_t old_bytes,
                           uint64_t prefix_bytes) {
  return residual_bytes >= kMatchZstdResidualThreshold ||
         (no_regions && residual_bytes != 0 && old_bytes > prefix_bytes);
}

Plan PlanRegions(std::string_view old_data, std::string_view new_data) {
  Plan plan = AlignRegions(old_data, new_data);
  // Regions are planned independently, and planning (estimates, the low-rank search) is most of
  // the diff time: a few threads take the regions in turn, and the results keep their order.
  std::vector<std::vector<Region>> planned(plan.regions.size());
  std::atomic<size_t> next{0};
  auto plan_some = [&] {
    for (size_t i = next++; i < planned.size(); i = next++) {
      planned[i] = PlanRegion(old_data, new_data, plan.regions[i]);
    }
  };
  const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, kMaxPlanThreads);
  std::vector<std::future<void>> helpers;
  for (unsigned t = 1; t < threads; ++t) {
    helpers.push_back(std::async(std::launch::async, plan_some));
  }
  plan_some();
  for (std::future<void>& helper : helpers) helper.get();
  plan.regions.clear();
  for (std::vector<Region>& regions : planned) {
    plan.regions.insert(plan.regions.end(), regions.begin(), regions.end());
  }
  return plan;
}

void PutParams(std::string& table, const Region& r) {
  if (r.transform == Transform::kPruneXor) {
    PutVarint(table, uint64_t{r.params.prune_threshold} |
                         (uint64_t{r.params.prune_keeps_sign ? 1u : 0u} << 31));
  } else if (r.transform == Transform::kGridXor) {
    PutVarint(table, std::bit_cast<uint64_t>(r.params.grid_step));
    PutVarint(table, ZigzagEncode(r.params.grid_min));
    PutVarint(table, ZigzagEncode(r.params.grid_max));
  } else if (r.transform == Transform::kLowRankSub) {
    const int factor_width = r.low_rank->factor_width;
    PutVarint(table, r.low_rank->rank);
    PutVarint(table, r.low_rank->rows);
    PutVarint(table, static_cast<uint64_t>(factor_width));
    for (const std::vector<float>* factor : {&r.low_rank->u, &r.low_rank->vt}) {
      for (float x : *factor) {
        char bytes[4];
        StoreWord(bytes, factor_width,
                  factor_width == 2 ? Float16Bits(x) : std::bit_cast<uint32_t>(x));
        table.append(bytes, factor_width);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat("tensor patch: ", std::string(what)));
}

// Reads one section byte by byte as varints; used for the payload header.
class VarintCursor {
 public:
  explicit VarintCursor(std::string_view data) : data_(data) {}
  std::optional<uint64_t> Next() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return std::nullopt;
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      if (shift == 63 && b > 1) return std::nullopt;
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    return std::nullopt;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

absl::StatusOr<TransformParams> ReadParams(StreamReader& table, Transform transform, int width) {
  TransformParams params;
  if (transform == Transform::kPruneXor) {
    absl::StatusOr<uint64_t> v = ReadVarint(table);
    if (!v.ok()) return v.status();
    if (*v >> 32 != 0) return Corrupt("bad pruning parameters");
    params.prune_threshold = static_cast<uint32_t>(*v & 0x7fffffff);
    params.prune_keeps_sign = (*v >> 31) != 0;
  } else if (transform == Transform::kGridXor) {
    absl::StatusOr<uint64_t> step = ReadVarint(table);
    absl::StatusOr<uint64_t> min = step.ok() ? ReadVarint(table) : step;
    absl::StatusOr<uint64_t> max = min.ok() ? ReadVarint(table) : min;
    if (!max.ok()) return max.status();
    params.grid_step = std::bit_cast<double>(*step);
    params.grid_min = ZigzagDecode(*min);
    params.grid_max = ZigzagDecode(*max);
  }
  if (!TransformParamsValid(transform, width, params)) {
    return Corrupt("transform parameters out of range");
  }
  return params;
}

// The factors of a low-rank region of `words` words of `width` bytes, checked against the decoder's
// bounds before anything is allocated. Before version 4 they are always float32.
absl::StatusOr<std::shared_ptr<const LowRankFactors>> ReadLowRankFactors(StreamReader& table,
                                                                         int width, uint64_t words,
                                                                         uint8_t version) {
  absl::StatusOr<uint64_t> rank = ReadVarint(table);
  absl::StatusOr<uint64_t> rows = rank.ok() ? ReadVarint(table) : rank;
  absl::StatusOr<uint64_t> factor_width = !rows.ok()            ? rows
                                          : version >= kVersion ? ReadVarint(table)
                                                                : absl::StatusOr<uint64_t>(4);
  if (!factor_width.ok()) return factor_width.status();
  if (*rank > kMaxLowRank || *rows == 0 || words % *rows != 0 ||
      !LowRankShapeValid(*rows, words / *rows, static_cast<uint32_t>(*rank))) {
    return Corrupt("bad low-rank factor shape");
  }
  if (*factor_width != 4 && *factor_width != 2) return Corrupt("bad low-rank factor width");
  auto f = std::make_shared<LowRankFactors>();
  f->width = width;
  f->rows = *rows;
  f->cols = words / *rows;
  f->rank = static_cast<uint32_t>(*rank);
  f->factor_width = static_cast<int>(*factor_width);
  f->u.resize(f->rows * f->rank);
  f->vt.resize(f->cols * f->rank);
  for (std::vector<float>* factor : {&f->u, &f->vt}) {
    for (float& x : *factor) {
      char bytes[4];
      if (absl::Status s = table.ReadExact(bytes, f->factor_width); !s.ok()) return s;
      const uint64_t bits = LoadWord(bytes, f->factor_width);
      x = f->factor_width == 2 ? Float16Value(static_cast<uint16_t>(bits))
                               : std::bit_cast<float>(static_cast<uint32_t>(bits));
      if (!std::isfinite(x)) return Corrupt("low-rank factor is not finite");
    }
  }
  return f;
}

// Receives residual bytes in order and writes them to `out`, emitting each tensor region from
// the planes when the residual reaches it.
class Interleaver : public ByteSink {
 public:
  Interleaver(OldSource& old, uint8_t version, uint64_t new_size, uint64_t residual_len,
              StreamReader& table, std::array<std::unique_ptr<PlaneReader>, kPlaneCount>& planes,
              ByteSink& out)
      : old_(old),
        version_(version),
        new_size_(new_size),
        residual_len_(residual_len),
        table_(table),
        planes_(planes),
        out_(out) {}

  absl::Status Start(uint64_t region_count) {
    regions_left_ = region_count;
    if (absl::Status s = LoadNext(); !s.ok()) return s;
    return EmitReadyRegions();
  }

  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      uint64_t take = data.size();
      if (have_region_) take = std::min<uint64_t>(take, residual_before_);
      if (take > residual_len_ - residual_done_ || take > new_size_ - written_) {
        return Corrupt("residual longer than declared");
      }
      if (absl::Status s = out_.Write(data.substr(0, static_cast<size_t>(take))); !s.ok()) {
        return s;
      }
      data.remove_prefix(static_cast<size_t>(take));
      residual_done_ += take;
      written_ += take;
      if (have_region_) residual_before_ -= take;
      if (absl::Status s = EmitReadyRegions(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Finish() {
    if (have_region_) return Corrupt("residual ends before a tensor region");
    if (residual_done_ != residual_len_) return Corrupt("residual shorter than declared");
    if (written_ != new_size_) return Corrupt("output length differs from the declared size");
    return absl::OkStatus();
  }

 private:
  absl::Status LoadNext() {
    have_region_ = false;
    if (regions_left_ == 0) return absl::OkStatus();
    --regions_left_;
    absl::StatusOr<uint64_t> before = ReadVarint(table_);
    absl::StatusOr<uint64_t> length = before.ok() ? ReadVarint(table_) : before;
    absl::StatusOr<uint64_t> mode = length.ok() ? ReadVarint(table_) : length;
    if (!mode.ok()) return mode.status();
    const uint64_t width_code = *mode & 3;
    const uint64_t transform = *mode >> 2;
    if (width_code > 2 || transform >= kTransformCount) return Corrupt("unknown region mode");
    width_ = 1 << width_code;
    transform_ = static_cast<Transform>(transform);
    if (*length == 0 || *length % width_ != 0) return Corrupt("bad region length");
    // Every region must fit in what is left of the output and of the residual.
    if (*before > residual_len_ - residual_done_ || *before > new_size_ - written_ ||
        *length > new_size_ - written_ - *before) {
      return Corrupt("region beyond the declared output size");
    }
    residual_before_ = *before;
    length_ = *length;
    if (transform_ != Transform::kLiteral) {
      absl::StatusOr<uint64_t> delta = ReadVarint(table_);
      if (!delta.ok()) return delta.status();
      const int64_t d = ZigzagDecode(*delta);
      // old_offset = prev_old_end_ + d, checked without overflow.
      if (d < 0 ? static_cast<uint64_t>(-(d + 1)) + 1 > prev_old_end_
                : static_cast<uint64_t>(d) > old_.size() - prev_old_end_) {
        return Corrupt("region's old offset outside the old file");
      }
      old_offset_ = prev_old_end_ + static_cast<uint64_t>(d);
      if (old_offset_ > old_.size() || length_ > old_.size() - old_offset_) {
        return Corrupt("region's old bytes outside the old file");
      }
      prev_old_end_ = old_offset_ + length_;
    }
    absl::StatusOr<TransformParams> params = ReadParams(table_, transform_, width_);
    if (!params.ok()) return params.status();
    params_ = *params;
    low_rank_.reset();
    if (transform_ == Transform::kLowRankSub) {
      absl::StatusOr<std::shared_ptr<const LowRankFactors>> factors =
          ReadLowRankFactors(table_, width_, length_ / width_, version_);
      if (!factors.ok()) return factors.status();
      low_rank_ = *std::move(factors);
    }
    have_region_ = true;
    return absl::OkStatus();
  }

  absl::Status EmitReadyRegions() {
    while (have_region_ && residual_before_ == 0) {
      if (absl::Status s = EmitRegion(); !s.ok()) return s;
      if (absl::Status s = LoadNext(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status EmitRegion() {
    if (out_buf_.empty()) {
      out_buf_.resize(kChunkBytes);
      plane_buf_.resize(kChunkBytes);
    }
    const WordTransform coder(transform_, width_, params_);
    const bool literal = transform_ == Transform::kLiteral;
    const int first = FirstPlane(width_);
    const uint64_t chunk_words = kChunkBytes / width_;
    const size_t plane_stride = static_cast<size_t>(chunk_words);
    uint64_t done = 0;
    while (done < length_) {
      const uint64_t words = std::min<uint64_t>(chunk_words, (length_ - done) / width_);
      for (int k = 0; k < width_; ++k) {
        if (absl::Status s = planes_[first + k]->Read(plane_buf_.data() + k * plane_stride,
                                                      static_cast<size_t>(words));
            !s.ok()) {
          return s;
        }
      }
      const char* old_chunk = nullptr;
      if (!literal) {
        absl::StatusOr<std::string_view> base = old_.Read(old_offset_ + done, words * width_);
        if (!base.ok()) return base.status();
        old_chunk = base->data();
      }
      if (low_rank_) {
        if (predicted_buf_.empty()) predicted_buf_.resize(kChunkBytes);
        PredictLowRankWords(*low_rank_, old_chunk, done / width_, words, predicted_buf_.data());
        old_chunk = predicted_buf_.data();
      }
      for (uint64_t i = 0; i < words; ++i) {
        uint64_t d = 0;
        for (int k = 0; k < width_; ++k) {
          d |= uint64_t{static_cast<uint8_t>(plane_buf_[k * plane_stride + i])} << (8 * k);
        }
        const uint64_t ow = literal ? 0 : LoadWord(old_chunk + i * width_, width_);
        StoreWord(out_buf_.data() + i * width_, width_, coder.Reconstruct(ow, d));
      }
      const size_t bytes = static_cast<size_t>(words * width_);
      if (absl::Status s = out_.Write(std::string_view(out_buf_.data(), bytes)); !s.ok()) {
        return s;
      }
      done += bytes;
      written_ += bytes;
    }
    return absl::OkStatus();
  }

  OldSource& old_;
  uint8_t version_;
  uint64_t new_size_;
  uint64_t residual_len_;
  StreamReader& table_;
  std::array<std::unique_ptr<PlaneReader>, kPlaneCount>& planes_;
  ByteSink& out_;

  uint64_t regions_left_ = 0;
  uint64_t written_ = 0;
  uint64_t residual_done_ = 0;
  uint64_t prev_old_end_ = 0;
  bool have_region_ = false;
  uint64_t residual_before_ = 0;
  uint64_t length_ = 0;
  int width_ = 1;
  Transform transform_ = Transform::kXor;
  TransformParams params_;
  std::shared_ptr<const LowRankFactors> low_rank_;
  uint64_t old_offset_ = 0;
  std::string out_buf_;
  std::string plane_buf_;
  std::string predicted_buf_;
};

}  // namespace

TensorAlignment AlignTensors(std::string_view old_data, std::string_view new_data) {
  const Plan plan = AlignRegions(old_data, new_data);
  TensorAlignment alignment;
  uint64_t region_bytes = 0;
  for (const Region& r : plan.regions) {
    alignment.regions.push_back({.new_offset = r.new_offset,
                                 .length = r.length,
                                 .old_offset = r.transform == Transform::kLiteral
                                                   ? std::nullopt
                                                   : std::optional<uint64_t>(r.old_offset)});
    region_bytes += r.length;
  }
  uint64_t prefix_bytes = 0;
  for (const ByteRange& r : plan.prefix) {
    alignment.prefix.emplace_back(r.offset, r.length);
    prefix_bytes += r.length;
  }
  alignment.residual_matched = ResidualTriesMatching(
      new_data.size() - region_bytes, plan.regions.empty(), old_data.size(), prefix_bytes);
  return alignment;
}

absl::Status TensorEncode(std::string_view old_data, std::string_view new_data, ByteSink& payload,
                          const DiffOptions& options) {
  const Plan plan = PlanRegions(old_data, new_data);

  std::string table;
  PutVarint(table, plan.prefix.size());
  uint64_t prefix_end = 0;
  std::string prefix;
  for (const ByteRange& r : plan.prefix) {
    PutVarint(table, r.offset - prefix_end);
    PutVarint(table, r.length);
    prefix.append(old_data.substr(r.offset, r.length));
    prefix_end = r.offset + r.length;
  }
  PutVarint(table, plan.regions.size());

  std::array<std::string, kPlaneCount> planes;
  std::string residual;
  uint64_t new_pos = 0;
  uint64_t prev_old_end = 0;
  for (const Region& r : plan.regions) {
    PutVarint(table, r.new_offset - new_pos);
    PutVarint(table, r.length);
    PutVarint(table, static_cast<uint64_t>(WidthCode(r.width)) |
                         (static_cast<uint64_t>(r.transform) << 2));
    if (r.transform != Transform::kLiteral) {
      PutVarint(table, ZigzagEncode(static_cast<int64_t>(r.old_offset - prev_old_end)));
      prev_old_end = r.old_offset + r.length;
    }
    PutParams(table, r);
    residual.append(new_data.substr(new_pos, r.new_offset - new_pos));
    const WordTransform coder = r.coder();
    const int first = FirstPlane(r.width);
    const uint64_t words = r.length / r.width;
    for (int k = 0; k < r.width; ++k) planes[first + k].reserve(planes[first + k].size() + words);
    // The words the transform sees: the old ones, or their low-rank prediction.
    std::string_view reference;
    if (r.transform != Transform::kLiteral) reference = old_data.substr(r.old_offset, r.length);
    std::string predicted;
    if (r.low_rank) {
      predicted.resize(r.length);
      PredictLowRankWords(*r.low_rank, reference.data(), 0, words, predicted.data());
      reference = predicted;
    }
    for (uint64_t i = 0; i < words; ++i) {
      const uint64_t nw = LoadWord(new_data.data() + r.new_offset + i * r.width, r.width);
      const uint64_t ow = reference.empty() ? 0 : LoadWord(reference.data() + i * r.width, r.width);
      const uint64_t d = coder.Forward(ow, nw);
      for (int k = 0; k < r.width; ++k)
        planes[first + k].push_back(static_cast<char>(d >> (8 * k)));
    }
    new_pos = r.new_offset + r.length;
  }
  residual.append(new_data.substr(new_pos));

  // Planes are independent: code them concurrently (the slow strong passes overlap).
  std::array<std::future<absl::StatusOr<EncodedPlane>>, kPlaneCount> plane_jobs;
  for (int p = 0; p < kPlaneCount; ++p) {
    plane_jobs[p] = std::async(std::launch::async, [&, p] {
      absl::StatusOr<EncodedPlane> plane =
          EncodePlane(planes[p], options.zstd_level, kPlaneWindowLog);
      planes[p] = std::string();
      return plane;
    });
  }
  absl::StatusOr<std::string> packed_table =
      CompressIfStructured(table, options.zstd_level, kTableWindowLog);
  if (!packed_table.ok()) return packed_table.status();
  int residual_coder = kResidualZstdPrefix;
  absl::StatusOr<std::string> packed_residual =
      CompressFrame(residual, options.zstd_level, kMaxWindowLog, prefix);
  if (!packed_residual.ok()) return packed_residual.status();
  if (ResidualTriesMatching(residual.size(), plan.regions.empty(), old_data.size(),
                            prefix.size())) {
    // Match-zstd may not be able to help (or be unavailable); then the prefix coding stands.
    StringSink matched;
    if (MatchZstdEncode(old_data, residual, matched, options).ok() &&
        matched.data().size() < packed_residual->size()) {
      residual_coder = kResidualMatchZstd;
      *packed_residual = std::move(matched.data());
    }
  }

  std::vector<std::string> sections;
  sections.push_back(*std::move(packed_table));
  uint64_t sparse_mask = 0;
  for (int p = 0; p < kPlaneCount; ++p) {
    absl::StatusOr<EncodedPlane> plane = plane_jobs[p].get();
    if (!plane.ok()) return plane.status();
    if (plane->sparse) {
      sparse_mask |= uint64_t{1} << p;
      sections.push_back(std::move(plane->gaps));
      sections.push_back(std::move(plane->values));
    } else {
      sections.push_back(std::move(plane->dense));
    }
  }
  sections.push_back(*std::move(packed_residual));

  std::string header(kMagic, sizeof(kMagic));
  header.push_back(static_cast<char>(kVersion));
  header.push_back(static_cast<char>(residual_coder));
  PutVarint(header, residual.size());
  PutVarint(header, sparse_mask);
  for (const std::string& s : sections) PutVarint(header, s.size());
  if (absl::Status s = payload.Write(header); !s.ok()) return s;
  for (const std::string& s : sections) {
    if (s.empty()) continue;
    if (absl::Status st = payload.Write(s); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status TensorDecode(OldSource& old, std::string_view payload, uint64_t new_size,
                          ByteSink& out) {
  if (payload.size() < sizeof(kMagic) + 2 ||
      std::memcmp(payload.data(), kMagic, sizeof(kMagic)) != 0) {
    return Corrupt("bad magic");
  }
  const auto version = static_cast<uint8_t>(payload[sizeof(kMagic)]);
  if (version != kVersion && version != kVersionFloat32Factors && version != kVersionNoLowRank &&
      version != kVersionDensePlanes) {
    return Corrupt(absl::StrCat("unknown format version ", version));
  }
  const int residual_coder = static_cast<uint8_t>(payload[sizeof(kMagic) + 1]);
  if (residual_coder != kResidualZstdPrefix && residual_coder != kResidualMatchZstd) {
    return Corrupt("unknown residual coder");
  }
  VarintCursor header(payload.substr(sizeof(kMagic) + 2));
  const std::optional<uint64_t> residual_len = header.Next();
  if (!residual_len || *residual_len > new_size) return Corrupt("bad residual length");
  const std::optional<uint64_t> sparse_mask =
      version == kVersionDensePlanes ? std::optional<uint64_t>(0) : header.Next();
  if (!sparse_mask || *sparse_mask >> kPlaneCount != 0) return Corrupt("bad sparse-plane mask");
  const size_t section_count = 2 + kPlaneCount + std::popcount(*sparse_mask);
  std::vector<std::string_view> sections(section_count);
  std::vector<uint64_t> sizes(section_count);
  for (uint64_t& size : sizes) {
    const std::optional<uint64_t> v = header.Next();
    if (!v) return Corrupt("truncated header");
    size = *v;
  }
  std::string_view rest = payload.substr(sizeof(kMagic) + 2 + header.pos());
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sizes[i] > rest.size()) return Corrupt("section beyond the end of the patch");
    sections[i] = rest.substr(0, static_cast<size_t>(sizes[i]));
    rest.remove_prefix(static_cast<size_t>(sizes[i]));
  }
  if (!rest.empty()) return Corrupt("trailing bytes after the last section");

  ZstdStreamReader table("tensor patch table", sections[0], kMaxWindowLog);
  absl::StatusOr<uint64_t> prefix_count = ReadVarint(table);
  if (!prefix_count.ok()) return prefix_count.status();
  std::string prefix;
  uint64_t prefix_end = 0;
  for (uint64_t i = 0; i < *prefix_count; ++i) {
    absl::StatusOr<uint64_t> gap = ReadVarint(table);
    absl::StatusOr<uint64_t> len = gap.ok() ? ReadVarint(table) : gap;
    if (!len.ok()) return len.status();
    if (*gap > old.size() - prefix_end || *len > old.size() - prefix_end - *gap ||
        *len > kMaxPrefixBytes - prefix.size()) {
      return Corrupt("prefix range outside the old file or over the limit");
    }
    absl::Status read = ForEachPiece(old, prefix_end + *gap, *len,
                                     [&](std::string_view piece) { prefix.append(piece); });
    if (!read.ok()) return read;
    prefix_end += *gap + *len;
  }
  absl::StatusOr<uint64_t> region_count = ReadVarint(table);
  if (!region_count.ok()) return region_count.status();

  std::array<std::unique_ptr<PlaneReader>, kPlaneCount> planes;
  size_t next_section = 1;
  for (int p = 0; p < kPlaneCount; ++p) {
    std::string name = absl::StrCat("tensor patch plane ", p);
    if (*sparse_mask & (uint64_t{1} << p)) {
      planes[p] = PlaneReader::Sparse(std::move(name), sections[next_section],
                                      sections[next_section + 1], kMaxPlaneWindowLog);
      next_section += 2;
    } else {
      planes[p] = PlaneReader::Dense(std::move(name), sections[next_section], kMaxPlaneWindowLog);
      next_section += 1;
    }
  }
  Interleaver interleaver(old, version, new_size, *residual_len, table, planes, out);
  if (absl::Status s = interleaver.Start(*region_count); !s.ok()) return s;

  const std::string_view residual = sections[next_section];
  if (residual_coder == kResidualMatchZstd) {
    if (absl::Status s = MatchZstdDecode(old, residual, *residual_len, interleaver); !s.ok()) {
      return s;
    }
  } else {
    ZstdStreamReader reader("tensor patch residual", residual, kMaxWindowLog, prefix);
    for (;;) {
      absl::StatusOr<bool> end = reader.AtEnd();
      if (!end.ok()) return end.status();
      if (*end) break;
      absl::StatusOr<std::string_view> chunk = reader.Read(kStreamBufferBytes);
      if (!chunk.ok()) return chunk.status();
      if (absl::Status s = interleaver.Write(*chunk); !s.ok()) return s;
    }
  }
  if (absl::Status s = interleaver.Finish(); !s.ok()) return s;
  absl::StatusOr<bool> table_end = table.AtEnd();
  if (!table_end.ok()) return table_end.status();
  if (!*table_end) return Corrupt("table longer than its regions");
  for (const std::unique_ptr<PlaneReader>& plane : planes) {
    if (absl::Status s = plane->ExpectEnd(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::delta::internal
