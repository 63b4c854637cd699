// The delta engine: patches that turn one model file into the next, so devices download only
// what changed. Codecs:
//   bsdiff40   - the classic BSDIFF40 format, byte-compatible with Debian's bsdiff/bspatch 4.3
//                (suffix arrays from libdivsufsort);
//   match-zstd - bsdiff-style matching with zstd-compressed streams, in an edgefleet container;
//   tensor     - tensor-aware: aligned tensors XOR-ed bit pattern by bit pattern, byte planes
//                split and entropy-coded, matching where the layout differs (container);
//   auto       - tries candidates within a time budget and keeps the smallest; after the tensor
//                codec, the matchers only when an estimate says they can beat it.
// A patch is hostile input until its output verifies: decoders check every declared size and
// control value, never allocate by a declared size, and write the output sequentially.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::delta {

enum class Codec : uint8_t {
  kBsdiff40 = 1,
  kMatchZstd = 2,
  kTensor = 3,
  kAuto = 255,  // only as a Diff() request; never stored in a patch
};

// "bsdiff40", "match-zstd", "tensor", "auto".
std::string_view CodecName(Codec codec);
absl::StatusOr<Codec> ParseCodec(std::string_view name);

// Sequential output: a file (written to a temporary and renamed on success), a hasher, memory.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::Status Write(std::string_view data) = 0;
};

// Collects everything in memory (patches are small; new files go to a FileSink instead).
class StringSink final : public ByteSink {
 public:
  absl::Status Write(std::string_view data) override {
    data_.append(data);
    return absl::OkStatus();
  }
  std::string& data() { return data_; }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

// A read-only view of a whole file, memory-mapped (diff inputs, and the patch being applied: they
// cost page cache, not heap).
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view data() const { return {static_cast<const char*>(addr_), size_}; }
  // Drops the pages read so far from this process's memory (they are re-read from the page
  // cache if touched again), so streaming over a large file keeps the resident set small.
  void ReleasePages() const;

 private:
  MappedFile(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_;
  size_t size_;
};

// The newest patch format this build's decoders read. It is raised whenever a format gains
// something older decoders cannot read (the tensor payload is at version 4); agents report it,
// so the server offers a device only patches its agent can apply. bsdiff40 and match-zstd have
// never changed.
inline constexpr uint32_t kDecoderFormatVersion = 4;

// The base a patch is applied to, read a piece at a time: no decoder needs the whole base at
// once. A file is read with pread through one buffer instead of being mapped, because a mapped
// file's resident set follows the page cache, not the reader: on recent kernels a file cached in
// 2 MiB folios becomes resident 2 MiB per page touched.
class OldSource {
 public:
  // The most one Read may ask for.
  static constexpr size_t kMaxReadBytes = size_t{64} << 10;

  virtual ~OldSource() = default;
  virtual uint64_t size() const = 0;
  // Exactly `length` bytes at `offset`, valid until the next Read. Callers keep
  // offset + length <= size() and length <= kMaxReadBytes.
  virtual absl::StatusOr<std::string_view> Read(uint64_t offset, size_t length) = 0;
};

// An OldSource over the file at `path`, read with pread through one kMaxReadBytes buffer.
// NotFound when it does not exist; InvalidArgument when it is not a regular file.
absl::StatusOr<std::unique_ptr<OldSource>> OpenOldFile(const std::string& path);

// An OldSource over bytes already in memory (no copying).
class MemoryOldSource final : public OldSource {
 public:
  explicit MemoryOldSource(std::string_view data) : data_(data) {}
  uint64_t size() const override { return data_.size(); }
  absl::StatusOr<std::string_view> Read(uint64_t offset, size_t length) override {
    return data_.substr(static_cast<size_t>(offset), length);
  }

 private:
  std::string_view data_;
};

struct DiffOptions {
  // `auto` stops trying further candidates once this is spent (the first always completes).
  std::chrono::milliseconds time_budget{std::chrono::seconds(60)};
  int zstd_level = 19;
  // Codecs that search (the matchers) give up with DeadlineExceeded after this point; `auto`
  // sets it for every candidate after the first so the budget is a bound, not a hint.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct DiffResult {
  Codec codec;  // the codec that produced the patch (never kAuto)
  uint64_t patch_size_bytes = 0;
  // auto only: true when no patch beat sending the new file compressed (zstd level 3); then the
  // patch is empty and the caller should send the full artifact.
  bool full_is_smaller = false;
  // auto only: the candidates that ran, in order (the rest were cut by the budget, or skipped
  // because byte matching could not beat the tensor patch).
  std::vector<Codec> tried = {};
};

// Writes a patch from `old_data` to `new_data` into `patch`.
absl::StatusOr<DiffResult> Diff(std::string_view old_data, std::string_view new_data, Codec codec,
                                ByteSink& patch, const DiffOptions& options = {});

struct ApplyOptions {
  // When non-zero the patch must declare exactly this output length (the manifest's).
  uint64_t expected_new_size_bytes = 0;
  // Hard cap on the output whatever the patch declares.
  uint64_t max_new_size_bytes = uint64_t{8} << 30;
  // The raw SHA-256 of the old data when the caller has already computed it; empty means Apply
  // hashes the old data itself (reading it once more).
  std::string old_sha256 = {};
};

// Rebuilds the new file from `old` and `patch` into `out`, sequentially. The codec is
// recognised from the patch's magic. InvalidArgument / DataLoss describe what is wrong with a
// damaged or hostile patch; nothing beyond the bytes produced so far reaches `out`.
absl::Status Apply(OldSource& old, std::string_view patch, ByteSink& out,
                   const ApplyOptions& options = {});
// The same over an old file already in memory.
absl::Status Apply(std::string_view old_data, std::string_view patch, ByteSink& out,
                   const ApplyOptions& options = {});

struct PatchInfo {
  Codec codec;
  uint64_t old_size_bytes = 0;
  uint64_t new_size_bytes = 0;
  std::string old_sha256;  // raw; empty for bsdiff40, which does not carry digests
  std::string new_sha256;
  uint64_t patch_size_bytes = 0;
};

absl::StatusOr<PatchInfo> Inspect(std::string_view patch);

}  // namespace edgefleet::delta
