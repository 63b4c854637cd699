#include "common/delta/internal/tensor_planes.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"

namespace edgefleet::delta::internal {
namespace {

// Planes are first compressed at this level; see EncodePlane.
constexpr int kQuickLevel = 3;
// A strong pass over a plane keeps the level's optimal parser but searches as for noise: weight
// planes hold no short repeats worth a match (a short match in noise costs more than its
// literals) and few long ones. On the benchmark corpus this gives level 19's sizes in about half
// its time.
constexpr std::pair<ZSTD_cParameter, int> kPlaneSearch[] = {{ZSTD_c_minMatch, 7},
                                                            {ZSTD_c_searchLog, 3},
                                                            {ZSTD_c_chainLog, 14},
                                                            {ZSTD_c_hashLog, 14},
                                                            {ZSTD_c_targetLength, 16}};

// The strong pass runs only where the quick pass got below this share of the input (9/10).
bool QuickPassFoundStructure(uint64_t packed, uint64_t raw) { return packed < raw * 9 / 10; }

// Sparse coding is tried only when at most this share of the bytes is non-zero.
constexpr uint64_t kSparseMaxNonZeroShare = 4;  // 1 in 4

struct SparseForm {
  std::string gaps;
  std::string values;
};

SparseForm ToSparse(std::string_view plane) {
  SparseForm form;
  uint64_t run = 0;
  size_t i = 0;
  while (i < plane.size()) {
    // Skip zero words eight bytes at a time: most of a sparse plane is zero.
    if (plane[i] == 0 && i + 8 <= plane.size()) {
      uint64_t word;
      std::memcpy(&word, plane.data() + i, 8);
      if (word == 0) {
        run += 8;
        i += 8;
        continue;
      }
    }
    if (plane[i] == 0) {
      ++run;
    } else {
      PutVarint(form.gaps, run);
      form.values.push_back(plane[i]);
      run = 0;
    }
    ++i;
  }
  return form;
}

absl::StatusOr<EncodedPlane> CompressPlane(std::string_view plane, const SparseForm* sparse,
                                           int level, int window_log) {
  EncodedPlane encoded;
  encoded.sparse = sparse != nullptr;
  auto compress = [&](std::string_view raw, std::string& packed) {
    absl::StatusOr<std::string> frame = CompressFrame(
        raw, level, window_log, {},
        level > kQuickLevel ? kPlaneSearch : std::span<const std::pair<ZSTD_cParameter, int>>{});
    if (!frame.ok()) return frame.status();
    packed = *std::move(frame);
    return absl::OkStatus();
  };
  absl::Status s = sparse ? compress(sparse->gaps, encoded.gaps) : compress(plane, encoded.dense);
  if (s.ok() && sparse) s = compress(sparse->values, encoded.values);
  if (!s.ok()) return s;
  return encoded;
}

absl::Status Corrupt(const std::string& name, std::string_view what) {
  return absl::DataLossError(absl::StrCat(name, ": ", absl::string_view(what.data(), what.size())));
}

class DensePlaneReader final : public PlaneReader {
 public:
  DensePlaneReader(std::string name, std::string_view frame, int window_log_max)
      : stream_(std::move(name), frame, window_log_max) {}

  absl::Status Read(char* dst, size_t n) override { return stream_.ReadExact(dst, n); }

  absl::Status ExpectEnd() override {
    absl::StatusOr<bool> end = stream_.AtEnd();
    if (!end.ok()) return end.status();
    if (!*end) return Corrupt(stream_.name(), "plane longer than its table declares");
    return absl::OkStatus();
  }

 private:
  ZstdStreamReader stream_;
};

class SparsePlaneReader final : public PlaneReader {
 public:
  SparsePlaneReader(std::string name, std::string_view gaps, std::string_view values,
                    int window_log_max)
      : name_(name),
        gaps_(name + " gaps", gaps, window_log_max),
        values_(name + " values", values, window_log_max) {}

  absl::Status Read(char* dst, size_t n) override {
    while (n > 0) {
      if (zeros_ > 0) {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(zeros_, n));
        std::memset(dst, 0, take);
        dst += take;
        n -= take;
        zeros_ -= take;
        continue;
      }
      if (value_pending_) {
        *dst++ = value_;
        --n;
        value_pending_ = false;
        continue;
      }
      // After the last non-zero byte the plane is zero to its end, which the table bounds.
      absl::StatusOr<bool> end = gaps_.AtEnd();
      if (!end.ok()) return end.status();
      if (*end) {
        std::memset(dst, 0, n);
        return absl::OkStatus();
      }
      absl::StatusOr<uint64_t> gap = ReadVarint(gaps_);
      if (!gap.ok()) return gap.status();
      if (absl::Status s = values_.ReadExact(&value_, 1); !s.ok()) return s;
      zeros_ = *gap;
      value_pending_ = true;
    }
    return absl::OkStatus();
  }

  absl::Status ExpectEnd() override {
    absl::StatusOr<bool> gaps_end = gaps_.AtEnd();
    if (!gaps_end.ok()) return gaps_end.status();
    absl::StatusOr<bool> values_end = values_.AtEnd();
    if (!values_end.ok()) return values_end.status();
    if (zeros_ > 0 || value_pending_ || !*gaps_end || !*values_end) {
      return Corrupt(name_, "plane longer than its table declares");
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  ZstdStreamReader gaps_;
  ZstdStreamReader values_;
  uint64_t zeros_ = 0;
  bool value_pending_ = false;
  char value_ = 0;
};

}  // namespace

absl::StatusOr<std::string> CompressFrame(std::string_view data, int level, int window_log,
                                          std::string_view prefix,
                                          std::span<const std::pair<ZSTD_cParameter, int>> tuning) {
  if (data.empty()) return std::string();
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return absl::ResourceExhaustedError("cannot create a zstd context");
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t rc = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel,
                                     std::clamp(level, 1, ZSTD_maxCLevel()));
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, window_log);
  for (const auto& [param, value] : tuning) {
    if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx.get(), param, value);
  }
  if (!ZSTD_isError(rc) && !prefix.empty()) {
    rc = ZSTD_CCtx_refPrefix(cctx.get(), prefix.data(), prefix.size());
  }
  if (!ZSTD_isError(rc)) {
    rc = ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  }
  if (ZSTD_isError(rc)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(rc)));
  out.resize(rc);
  return out;
}

absl::StatusOr<std::string> CompressIfStructured(std::string_view data, int level, int window_log) {
  const int quick_level = std::min(level, kQuickLevel);
  absl::StatusOr<std::string> best = CompressFrame(data, quick_level, window_log);
  if (!best.ok() || level <= quick_level || !QuickPassFoundStructure(best->size(), data.size())) {
    return best;
  }
  absl::StatusOr<std::string> strong = CompressFrame(data, level, window_log);
  if (!strong.ok()) return strong.status();
  return strong->size() < best->size() ? strong : best;
}

absl::StatusOr<EncodedPlane> EncodePlane(std::string_view plane, int level, int window_log) {
  const uint64_t zeros = static_cast<uint64_t>(std::count(plane.begin(), plane.end(), '\0'));
  std::optional<SparseForm> sparse;
  if ((plane.size() - zeros) * kSparseMaxNonZeroShare <= plane.size()) sparse = ToSparse(plane);

  const int quick_level = std::min(level, kQuickLevel);
  absl::StatusOr<EncodedPlane> best = CompressPlane(plane, nullptr, quick_level, window_log);
  if (!best.ok()) return best.status();
  if (sparse) {
    absl::StatusOr<EncodedPlane> coded = CompressPlane(plane, &*sparse, quick_level, window_log);
    if (!coded.ok()) return coded.status();
    if (coded->size() < best->size()) best = std::move(coded);
  }
  // Low mantissa bytes are noise that high levels spend minutes on for nothing: only a plane
  // the quick pass could shrink gets the requested level.
  if (level > quick_level && QuickPassFoundStructure(best->size(), plane.size())) {
    absl::StatusOr<EncodedPlane> strong =
        CompressPlane(plane, best->sparse ? &*sparse : nullptr, level, window_log);
    if (!strong.ok()) return strong.status();
    if (strong->size() < best->size()) best = std::move(strong);
  }
  return best;
}

std::unique_ptr<PlaneReader> PlaneReader::Dense(std::string name, std::string_view frame,
                                                int window_log_max) {
  return std::make_unique<DensePlaneReader>(std::move(name), frame, window_log_max);
}

std::unique_ptr<PlaneReader> PlaneReader::Sparse(std::string name, std::string_view gaps,
                                                 std::string_view values, int window_log_max) {
  return std::make_unique<SparsePlaneReader>(std::move(name), gaps, values, window_log_max);
}

}  // namespace edgefleet::delta::internal
