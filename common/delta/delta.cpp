#include "common/delta/delta.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/delta/internal/bsdiff40.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/container.h"
#include "common/delta/internal/match_estimate.h"
#include "common/delta/internal/match_zstd.h"
#include "common/delta/internal/onnx_layout.h"

namespace edgefleet::delta {
namespace {

constexpr std::string_view kBsdiff40Magic = "BSDIFF40";
// bsdiff40 is a slow, memory-hungry fallback: `auto` only tries it on small inputs.
constexpr uint64_t kAutoBsdiffLimitBytes = uint64_t{64} << 20;

class CountingSink final : public ByteSink {
 public:
  explicit CountingSink(ByteSink& out) : out_(out) {}
  absl::Status Write(std::string_view data) override {
    count_ += data.size();
    return out_.Write(data);
  }
  uint64_t count() const { return count_; }

 private:
  ByteSink& out_;
  uint64_t count_ = 0;
};

absl::Status DiffWith(std::string_view old_data, std::string_view new_data, Codec codec,
                      ByteSink& patch, const DiffOptions& options) {
  switch (codec) {
    case Codec::kBsdiff40:
      return internal::Bsdiff40Encode(old_data, new_data, patch, options);
    case Codec::kMatchZstd:
    case Codec::kTensor:
      return internal::ContainerDiff(old_data, new_data, codec, patch, options);
    case Codec::kAuto:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown delta codec ", static_cast<int>(codec)));
}

absl::Status Annotate(const absl::Status& s, std::string_view what) {
  return absl::Status(s.code(),
                      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", s.message()));
}

// Share of aligned tensor bytes above which matching codecs are not tried (see DiffAuto).
constexpr double kAlignedEnough = 0.75;
// A tensor patch at most this share of the compressed full artifact counts as having paid off.
constexpr double kTensorGoodEnough = 0.7;
// Below this, a tensor patch is no reason to skip the matchers (see DiffAuto).
constexpr size_t kSmallPatchBytes = 64 << 10;
// How the alternative to a patch, the full artifact, is compressed for the comparison.
constexpr int kFullArtifactZstdLevel = 3;

absl::StatusOr<DiffResult> DiffAuto(std::string_view old_data, std::string_view new_data,
                                    ByteSink& patch, const DiffOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Codec> candidates = {Codec::kTensor, Codec::kMatchZstd};
  if (old_data.size() < kAutoBsdiffLimitBytes && new_data.size() < kAutoBsdiffLimitBytes) {
    candidates.push_back(Codec::kBsdiff40);
  }
  // The full artifact would be streamed compressed at a fast level (level 19 over a large
  // model costs more time than every candidate together, for a few percent).
  absl::StatusOr<uint64_t> full = internal::ZstdCompressedSize(new_data, kFullArtifactZstdLevel);
  if (!full.ok()) return full.status();

  std::optional<Codec> best_codec;
  std::string best;
  absl::Status first_error;
  std::vector<Codec> tried;
  for (Codec codec : candidates) {
    // The budget only stops later candidates: the first one that works always completes.
    if (best_codec.has_value() && std::chrono::steady_clock::now() - start >= options.time_budget) {
      break;
    }
    DiffOptions bounded = options;
    if (best_codec.has_value()) {
      bounded.deadline = std::min(options.deadline, start + options.time_budget);
    }
    StringSink candidate;
    tried.push_back(codec);
    if (absl::Status s = DiffWith(old_data, new_data, codec, candidate, bounded); !s.ok()) {
      // A candidate that cannot handle these inputs (the tensor codec on a non-ONNX file, or
      // not built yet) is skipped; its error is reported only if nothing works.
      if (first_error.ok()) first_error = Annotate(s, CodecName(codec));
      continue;
    }
    if (!best_codec.has_value() || candidate.data().size() < best.size()) {
      best_codec = codec;
      best = std::move(candidate.data());
    }
    // When nearly every byte is a weight tensor aligned by name and the aligned coding paid
    // off, byte matching would find no more, at many times the cost: stop here. (Where it did
    // not pay off, e.g. weights permuted within a tensor, matching still gets its turn.)
    if (codec == Codec::kTensor && best_codec == Codec::kTensor &&
        best.size() <= kTensorGoodEnough * static_cast<double>(*full) &&
        internal::AlignedTensorFraction(old_data, new_data) >= kAlignedEnough) {
      break;
    }
    // Otherwise the matchers (every candidate after the tensor codec) run only if they can beat
    // it: a sample of the bytes the tensor patch pays for must occur in old elsewhere (see
    // match_estimate.cpp). It costs one hashing pass over old; a matcher that cannot pay would
    // search its suffix array at every byte of new, for up to the whole budget. A small tensor
    // patch (few bytes changed) keeps every candidate as before: a byte-matching patch as small
    // is one that every agent decodes (a raw file with four edits: 623 bytes of tensor patch).
    if (codec == Codec::kTensor && best_codec == Codec::kTensor && best.size() > kSmallPatchBytes &&
        !internal::EstimateMatching(old_data, new_data).can_pay) {
      break;
    }
  }
  if (!best_codec.has_value()) return Annotate(first_error, "auto: no codec produced a patch");

  DiffResult result{.codec = *best_codec, .tried = std::move(tried)};
  if (*full < best.size()) {
    result.full_is_smaller = true;
    return result;
  }
  if (absl::Status s = patch.Write(best); !s.ok()) return s;
  result.patch_size_bytes = best.size();
  return result;
}

}  // namespace

std::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kBsdiff40:
      return "bsdiff40";
    case Codec::kMatchZstd:
      return "match-zstd";
    case Codec::kTensor:
      return "tensor";
    case Codec::kAuto:
      return "auto";
  }
  return "unknown";
}

absl::StatusOr<Codec> ParseCodec(std::string_view name) {
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd, Codec::kTensor, Codec::kAuto}) {
    if (name == CodecName(codec)) return codec;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown delta codec '", absl::string_view(name.data(), name.size()),
                   "' (expected bsdiff40, match-zstd, tensor or auto)"));
}

absl::StatusOr<DiffResult> Diff(std::string_view old_data, std::string_view new_data, Codec codec,
                                ByteSink& patch, const DiffOptions& options) {
  if (codec == Codec::kAuto) return DiffAuto(old_data, new_data, patch, options);
  CountingSink counting(patch);
  if (absl::Status s = DiffWith(old_data, new_data, codec, counting, options); !s.ok()) {
    return Annotate(s, CodecName(codec));
  }
  return DiffResult{.codec = codec, .patch_size_bytes = counting.count()};
}

absl::Status Apply(OldSource& old, std::string_view patch, ByteSink& out,
                   const ApplyOptions& options) {
  if (patch.substr(0, kBsdiff40Magic.size()) == kBsdiff40Magic) {
    return internal::Bsdiff40Decode(old, patch, out, options);
  }
  if (patch.substr(0, internal::kContainerMagic.size()) == internal::kContainerMagic) {
    return internal::ContainerApply(old, patch, out, options);
  }
  return absl::InvalidArgumentError(absl::StrCat("not a delta patch: ", patch.size(),
                                                 " bytes without a BSDIFF40 or EFDELTA1 magic"));
}

absl::Status Apply(std::string_view old_data, std::string_view patch, ByteSink& out,
                   const ApplyOptions& options) {
  MemoryOldSource old(old_data);
  return Apply(old, patch, out, options);
}

absl::StatusOr<PatchInfo> Inspect(std::string_view patch) {
  PatchInfo info;
  info.patch_size_bytes = patch.size();
  if (patch.substr(0, kBsdiff40Magic.size()) == kBsdiff40Magic) {
    absl::StatusOr<internal::Bsdiff40Header> header = internal::ParseBsdiff40Header(patch);
    if (!header.ok()) return header.status();
    info.codec = Codec::kBsdiff40;
    info.new_size_bytes = header->new_size_bytes;
    return info;
  }
  if (patch.substr(0, internal::kContainerMagic.size()) == internal::kContainerMagic) {
    absl::StatusOr<internal::ContainerHeader> header = internal::ParseContainerHeader(patch);
    if (!header.ok()) return header.status();
    info.codec = header->codec;
    info.old_size_bytes = header->old_size_bytes;
    info.new_size_bytes = header->new_size_bytes;
    info.old_sha256 = std::move(header->old_sha256);
    info.new_sha256 = std::move(header->new_sha256);
    return info;
  }
  return absl::InvalidArgumentError(absl::StrCat("not a delta patch: ", patch.size(),
                                                 " bytes without a BSDIFF40 or EFDELTA1 magic"));
}

}  // namespace edgefleet::delta
