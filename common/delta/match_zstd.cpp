// match-zstd payload (after the edgefleet container header), all little-endian:
//   0  8  length of the control frame
//   8  8  length of the diff frame
//   16 8  length of the extra frame
//   24 .. three zstd frames; their lengths add up to the rest of the payload exactly.
// The control stream is LEB128 varints per step: diff_len, extra_len, zigzag(seek). Diff and
// extra streams are bsdiff's. Steps come from the same matcher as bsdiff40.
#include "common/delta/internal/match_zstd.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/matcher.h"
#include "common/delta/internal/patch_stream.h"

namespace edgefleet::delta::internal {
namespace {

constexpr size_t kLengthsSize = 24;
// zstd's smallest window (ZSTD_WINDOWLOG_MIN is only in its static-linking API).
constexpr int kMinZstdWindowLog = 10;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

absl::Status ZstdError(std::string_view what, size_t rc) {
  return absl::InternalError(absl::StrCat("zstd ", absl::string_view(what.data(), what.size()),
                                          ": ", ZSTD_getErrorName(rc)));
}

int WindowLogFor(uint64_t size) {
  const int log = size <= 1 ? 0 : static_cast<int>(std::bit_width(size - 1));
  return std::clamp(log, kMinZstdWindowLog, kMaxZstdWindowLog);
}

// One zstd frame of a known total size, compressed as chunks arrive; `emit` receives output.
class ZstdWriter {
 public:
  template <typename Emit>
  static absl::Status Compress(
      uint64_t total, int level, Emit&& emit,
      absl::FunctionRef<absl::Status(absl::FunctionRef<absl::Status(std::string_view)>)> produce) {
    std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx(ZSTD_createCCtx());
    if (cctx == nullptr) return absl::ResourceExhaustedError("zstd: cannot create a context");
    for (auto [param, value] : {std::pair{ZSTD_c_compressionLevel, level},
                                std::pair{ZSTD_c_enableLongDistanceMatching, 1},
                                std::pair{ZSTD_c_windowLog, WindowLogFor(total)}}) {
      if (size_t rc = ZSTD_CCtx_setParameter(cctx.get(), param, value); ZSTD_isError(rc)) {
        return ZstdError("set parameter", rc);
      }
    }
    if (size_t rc = ZSTD_CCtx_setPledgedSrcSize(cctx.get(), total); ZSTD_isError(rc)) {
      return ZstdError("pledge size", rc);
    }
    std::string buffer(ZSTD_CStreamOutSize(), '\0');
    auto run = [&](std::string_view data, ZSTD_EndDirective mode) -> absl::Status {
      ZSTD_inBuffer in{data.data(), data.size(), 0};
      for (;;) {
        ZSTD_outBuffer out{buffer.data(), buffer.size(), 0};
        const size_t rc = ZSTD_compressStream2(cctx.get(), &out, &in, mode);
        if (ZSTD_isError(rc)) return ZstdError("compress", rc);
        if (out.pos > 0) {
          if (absl::Status s = emit(std::string_view(buffer.data(), out.pos)); !s.ok()) return s;
        }
        const bool finished = mode == ZSTD_e_end ? rc == 0 : in.pos == in.size;
        if (finished) return absl::OkStatus();
      }
    };
    if (absl::Status s =
            produce([&](std::string_view chunk) { return run(chunk, ZSTD_e_continue); });
        !s.ok()) {
      return s;
    }
    return run({}, ZSTD_e_end);
  }
};

void PutU64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

// Compresses one stream into memory; the payload needs every frame's length up front.
absl::StatusOr<std::string> CompressStream(
    uint64_t total, int level,
    absl::FunctionRef<absl::Status(absl::FunctionRef<absl::Status(std::string_view)>)> produce) {
  std::string out;
  absl::Status s = ZstdWriter::Compress(
      total, level,
      [&](std::string_view chunk) {
        out.append(chunk);
        return absl::OkStatus();
      },
      produce);
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::StatusOr<uint64_t> ZstdCompressedSize(std::string_view data, int level) {
  uint64_t size = 0;
  absl::Status s = ZstdWriter::Compress(
      data.size(), level,
      [&](std::string_view chunk) {
        size += chunk.size();
        return absl::OkStatus();
      },
      [&](absl::FunctionRef<absl::Status(std::string_view)> sink) -> absl::Status {
        for (size_t at = 0; at < data.size(); at += kStreamBufferBytes * 16) {
          if (absl::Status st = sink(data.substr(at, kStreamBufferBytes * 16)); !st.ok()) return st;
        }
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return size;
}

absl::Status MatchZstdEncode(std::string_view old_data, std::string_view new_data,
                             ByteSink& payload, const DiffOptions& options) {
  absl::StatusOr<std::vector<MatchStep>> steps =
      ComputeMatchSteps(old_data, new_data, options.deadline);
  if (!steps.ok()) return steps.status();

  std::string ctrl_raw;
  for (const MatchStep& step : *steps) {
    PutVarint(ctrl_raw, step.diff_len);
    PutVarint(ctrl_raw, step.extra_len);
    PutVarint(ctrl_raw, ZigzagEncode(step.seek));
  }
  absl::StatusOr<std::string> ctrl = CompressStream(
      ctrl_raw.size(), options.zstd_level,
      [&](absl::FunctionRef<absl::Status(std::string_view)> sink) { return sink(ctrl_raw); });
  if (!ctrl.ok()) return ctrl.status();
  ctrl_raw = std::string();

  absl::StatusOr<std::string> diff =
      CompressStream(TotalDiffBytes(*steps), options.zstd_level,
                     [&](absl::FunctionRef<absl::Status(std::string_view)> sink) {
                       return ForEachDiffChunk(old_data, new_data, *steps, sink);
                     });
  if (!diff.ok()) return diff.status();

  absl::StatusOr<std::string> extra =
      CompressStream(TotalExtraBytes(*steps), options.zstd_level,
                     [&](absl::FunctionRef<absl::Status(std::string_view)> sink) {
                       return ForEachExtraChunk(new_data, *steps, sink);
                     });
  if (!extra.ok()) return extra.status();

  char lengths[kLengthsSize];
  PutU64(ctrl->size(), lengths);
  PutU64(diff->size(), lengths + 8);
  PutU64(extra->size(), lengths + 16);
  for (std::string_view part : {std::string_view(lengths, kLengthsSize), std::string_view(*ctrl),
                                std::string_view(*diff), std::string_view(*extra)}) {
    if (absl::Status s = payload.Write(part); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status MatchZstdDecode(OldSource& old, std::string_view payload, uint64_t new_size,
                             ByteSink& out) {
  if (payload.size() < kLengthsSize) {
    return absl::InvalidArgumentError(absl::StrCat("match-zstd payload of ", payload.size(),
                                                   " bytes is shorter than its 24-byte header"));
  }
  const uint64_t ctrl_len = GetU64(payload.data());
  const uint64_t diff_len = GetU64(payload.data() + 8);
  const uint64_t extra_len = GetU64(payload.data() + 16);
  std::string_view body = payload.substr(kLengthsSize);
  if (ctrl_len > body.size() || diff_len > body.size() - ctrl_len ||
      extra_len != body.size() - ctrl_len - diff_len) {
    return absl::InvalidArgumentError(absl::StrCat("match-zstd payload declares frames of ",
                                                   ctrl_len, " + ", diff_len, " + ", extra_len,
                                                   " bytes but carries ", body.size(), " bytes"));
  }
  ZstdStreamReader ctrl("match-zstd control", body.substr(0, ctrl_len), kMaxZstdWindowLog);
  ZstdStreamReader diff("match-zstd diff", body.substr(ctrl_len, diff_len), kMaxZstdWindowLog);
  ZstdStreamReader extra("match-zstd extra", body.substr(ctrl_len + diff_len), kMaxZstdWindowLog);

  StepApplier applier(old, new_size, out);
  while (!applier.done()) {
    MatchStep step;
    absl::StatusOr<uint64_t> v = ReadVarint(ctrl);
    if (!v.ok()) return v.status();
    step.diff_len = *v;
    if (v = ReadVarint(ctrl); !v.ok()) return v.status();
    step.extra_len = *v;
    if (v = ReadVarint(ctrl); !v.ok()) return v.status();
    step.seek = ZigzagDecode(*v);
    if (absl::Status s = applier.Apply(step, diff, extra); !s.ok()) return s;
  }
  return ExpectFullyConsumed({&ctrl, &diff, &extra});
}

}  // namespace edgefleet::delta::internal
