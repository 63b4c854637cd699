// Decoder plumbing shared by the codecs: bounded reads from a decompressing stream, varints, and
// the checked application of control steps, so hostile patches are refused the same way.
#pragma once

#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/delta/delta.h"
#include "common/delta/internal/matcher.h"

namespace edgefleet::delta::internal {

// Bytes per decompression buffer: decoders hold a few of these whatever the file sizes.
inline constexpr size_t kStreamBufferBytes = size_t{64} << 10;
static_assert(kStreamBufferBytes <= OldSource::kMaxReadBytes);

// One decompressed stream read through a fixed buffer. Subclasses decompress; this class hands
// out bytes and turns "ran out" into a DataLoss error that names the stream.
class StreamReader {
 public:
  explicit StreamReader(std::string name)
      : name_(std::move(name)), buffer_(kStreamBufferBytes, 0) {}
  virtual ~StreamReader() = default;
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // Between 1 and `max` bytes; DataLoss if the stream ends first. Valid until the next call.
  absl::StatusOr<std::string_view> Read(size_t max);
  // Exactly `n` bytes into `dst`.
  absl::Status ReadExact(char* dst, size_t n);
  // True when the stream ended cleanly with every byte consumed.
  absl::StatusOr<bool> AtEnd();

  const std::string& name() const { return name_; }

 protected:
  // Decompresses at most `capacity` bytes into `dst`, setting `*produced`. Must make progress:
  // produce bytes, or set `*eof` (clean end of the compressed stream), or fail (truncated or
  // corrupt input, as DataLoss).
  virtual absl::Status Refill(char* dst, size_t capacity, size_t* produced, bool* eof) = 0;

 private:
  absl::Status Fill();

  std::string name_;
  std::string buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

// A zstd frame read through StreamReader's buffer, refusing windows beyond `window_log_max`.
// `prefix` (kept alive by the caller) is the raw-content dictionary the encoder referenced. An
// empty `compressed` is an empty stream (encoders write no frame for empty data).
class ZstdStreamReader final : public StreamReader {
 public:
  ZstdStreamReader(std::string name, std::string_view compressed, int window_log_max,
                   std::string_view prefix = {});

 protected:
  absl::Status Refill(char* dst, size_t capacity, size_t* produced, bool* eof) override;

 private:
  struct DCtxDeleter {
    void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
  };

  ZSTD_inBuffer in_;
  int window_log_max_;
  std::string_view prefix_;
  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx_;
  bool frame_complete_ = false;
};

// LEB128 varints and zigzag, as every codec's control data uses them.
inline void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline uint64_t ZigzagEncode(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t ZigzagDecode(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}
// DataLoss (naming the stream) on a truncated or over-long varint.
absl::StatusOr<uint64_t> ReadVarint(StreamReader& in);

// Hands `fn` the bytes [offset, offset + length) of `old`, at most OldSource::kMaxReadBytes at a
// time (the caller keeps the range inside the source).
template <typename Fn>
absl::Status ForEachPiece(OldSource& old, uint64_t offset, uint64_t length, Fn fn) {
  for (const uint64_t end = offset + length; offset < end;) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(OldSource::kMaxReadBytes, end - offset));
    absl::StatusOr<std::string_view> piece = old.Read(offset, n);
    if (!piece.ok()) return piece.status();
    fn(*piece);
    offset += n;
  }
  return absl::OkStatus();
}

// The raw SHA-256 of the whole of `old`, read a piece at a time.
absl::StatusOr<std::string> Sha256Of(OldSource& old);

// Rebuilds the new file step by step: each step is validated against the old and declared new
// sizes before any of its bytes are produced, and output goes to `out` in bounded chunks.
class StepApplier {
 public:
  StepApplier(OldSource& old, uint64_t new_size, ByteSink& out)
      : old_(old), new_size_(new_size), out_(out), scratch_(kStreamBufferBytes, 0) {}

  absl::Status Apply(const MatchStep& step, StreamReader& diff, StreamReader& extra);
  bool done() const { return new_pos_ == new_size_; }
  uint64_t new_pos() const { return new_pos_; }

 private:
  OldSource& old_;
  uint64_t new_size_;
  ByteSink& out_;
  std::string scratch_;
  uint64_t new_pos_ = 0;
  uint64_t old_pos_ = 0;
  uint64_t steps_ = 0;
};

}  // namespace edgefleet::delta::internal

namespace edgefleet::delta::internal {

// The declared output length against the caller's expectations: the exact manifest length when
// given, and the hard cap. InvalidArgument names both numbers.
absl::Status CheckDeclaredNewSize(uint64_t declared, const ApplyOptions& options);

// After the last step: every stream must have ended cleanly with nothing left over. Genuine
// encoders write exactly what the steps consume; this also makes the compressors' own
// end-of-stream checksums count (bzip2's combined CRC, zstd's frame end).
absl::Status ExpectFullyConsumed(std::initializer_list<StreamReader*> readers);

}  // namespace edgefleet::delta::internal
