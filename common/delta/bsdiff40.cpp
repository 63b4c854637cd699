// BSDIFF40 exactly as Debian's bsdiff/bspatch 4.3 write and read it:
//   0  8  "BSDIFF40"
//   8  8  length of the bzip2ed control block   (offtout: 8-byte sign-magnitude little-endian)
//   16 8  length of the bzip2ed diff block
//   24 8  length of the new file
//   32 .. bzip2 control block (triples x, y, z), bzip2 diff block, bzip2 extra block
#include "common/delta/internal/bsdiff40.h"

#include <bzlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/matcher.h"
#include "common/delta/internal/patch_stream.h"

namespace edgefleet::delta::internal {
namespace {

constexpr std::string_view kMagic = "BSDIFF40";
constexpr size_t kHeaderSize = 32;
// Debian's bsdiff: BZ2_bzWriteOpen(&err, f, 9, 0, 0), i.e. 900k blocks, default work factor.
constexpr int kBlockSize100k = 9;
// bzip2 takes unsigned int lengths; feed huge inputs in slices.
constexpr size_t kMaxBzChunk = size_t{1} << 30;

void OffOut(int64_t x, char* buf) {
  uint64_t y = x < 0 ? uint64_t{0} - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<char>(y & 0xff);
    y >>= 8;
  }
  if (x < 0) buf[7] = static_cast<char>(static_cast<uint8_t>(buf[7]) | 0x80);
}

// Returns the magnitude and sign separately so that callers can refuse negatives without
// ever negating INT64_MIN-like patterns.
struct Off {
  uint64_t magnitude;
  bool negative;
  int64_t value() const {
    return negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
  }
};

Off OffIn(const char* buf) {
  uint64_t y = static_cast<uint8_t>(buf[7]) & 0x7f;
  for (int i = 6; i >= 0; --i) y = (y << 8) | static_cast<uint8_t>(buf[i]);
  return Off{y, (static_cast<uint8_t>(buf[7]) & 0x80) != 0};
}

class Bz2Writer {
 public:
  Bz2Writer() {
    std::memset(&strm_, 0, sizeof(strm_));
    rc_ = BZ2_bzCompressInit(&strm_, kBlockSize100k, 0, 0);
    strm_.next_out = buffer_;
    strm_.avail_out = sizeof(buffer_);
  }
  ~Bz2Writer() {
    if (rc_ == BZ_OK) BZ2_bzCompressEnd(&strm_);
  }
  Bz2Writer(const Bz2Writer&) = delete;
  Bz2Writer& operator=(const Bz2Writer&) = delete;

  absl::Status Write(std::string_view data) {
    if (rc_ != BZ_OK) return absl::InternalError(absl::StrCat("bzip2 init failed (", rc_, ")"));
    while (!data.empty()) {
      const size_t n = std::min(data.size(), kMaxBzChunk);
      strm_.next_in = const_cast<char*>(data.data());
      strm_.avail_in = static_cast<unsigned>(n);
      while (strm_.avail_in > 0) {
        if (absl::Status s = Step(BZ_RUN, BZ_RUN_OK); !s.ok()) return s;
      }
      data.remove_prefix(n);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Finish() {
    if (rc_ != BZ_OK) return absl::InternalError(absl::StrCat("bzip2 init failed (", rc_, ")"));
    strm_.avail_in = 0;
    for (;;) {
      const int rc = BZ2_bzCompress(&strm_, BZ_FINISH);
      Drain();
      if (rc == BZ_STREAM_END) break;
      if (rc != BZ_FINISH_OK)
        return absl::InternalError(absl::StrCat("bzip2 finish failed (", rc, ")"));
    }
    return std::move(out_);
  }

 private:
  absl::Status Step(int action, int ok) {
    const int rc = BZ2_bzCompress(&strm_, action);
    Drain();
    if (rc != ok) return absl::InternalError(absl::StrCat("bzip2 compression failed (", rc, ")"));
    return absl::OkStatus();
  }
  // Points bzip2 at fresh room and keeps what it produced.
  void Drain() {
    const size_t produced = sizeof(buffer_) - strm_.avail_out;
    out_.append(buffer_, produced);
    strm_.next_out = buffer_;
    strm_.avail_out = sizeof(buffer_);
  }

  bz_stream strm_;
  int rc_;
  char buffer_[64 << 10];
  std::string out_;
};

class Bz2Reader final : public StreamReader {
 public:
  Bz2Reader(std::string name, std::string_view compressed)
      : StreamReader(std::move(name)), input_(compressed) {
    std::memset(&strm_, 0, sizeof(strm_));
  }
  ~Bz2Reader() override {
    if (initialized_) BZ2_bzDecompressEnd(&strm_);
  }

 protected:
  absl::Status Refill(char* dst, size_t capacity, size_t* produced, bool* eof) override {
    if (!initialized_) {
      if (const int rc = BZ2_bzDecompressInit(&strm_, 0, 0); rc != BZ_OK) {
        return absl::ResourceExhaustedError(absl::StrCat("bzip2 init failed (", rc, ")"));
      }
      initialized_ = true;
    }
    strm_.next_out = dst;
    strm_.avail_out = static_cast<unsigned>(capacity);
    for (;;) {
      if (strm_.avail_in == 0 && !input_.empty()) {
        const size_t n = std::min(input_.size(), kMaxBzChunk);
        strm_.next_in = const_cast<char*>(input_.data());
        strm_.avail_in = static_cast<unsigned>(n);
        input_.remove_prefix(n);
      }
      const int rc = BZ2_bzDecompress(&strm_);
      *produced = capacity - strm_.avail_out;
      if (rc == BZ_STREAM_END) {
        *eof = true;
        return absl::OkStatus();
      }
      if (rc != BZ_OK) return absl::DataLossError(absl::StrCat("corrupt bzip2 data (", rc, ")"));
      if (*produced > 0) return absl::OkStatus();
      if (strm_.avail_in == 0 && input_.empty()) {
        return absl::DataLossError("bzip2 data is truncated");
      }
    }
  }

 private:
  std::string_view input_;
  bz_stream strm_;
  bool initialized_ = false;
};

}  // namespace

absl::Status Bsdiff40Encode(std::string_view old_data, std::string_view new_data, ByteSink& patch,
                            const DiffOptions& options) {
  absl::StatusOr<std::vector<MatchStep>> steps =
      ComputeMatchSteps(old_data, new_data, options.deadline);
  if (!steps.ok()) return steps.status();

  Bz2Writer ctrl;
  std::string batch;
  for (const MatchStep& step : *steps) {
    char triple[24];
    OffOut(static_cast<int64_t>(step.diff_len), triple);
    OffOut(static_cast<int64_t>(step.extra_len), triple + 8);
    OffOut(step.seek, triple + 16);
    batch.append(triple, sizeof(triple));
    if (batch.size() >= kStreamBufferBytes) {
      if (absl::Status s = ctrl.Write(batch); !s.ok()) return s;
      batch.clear();
    }
  }
  if (absl::Status s = ctrl.Write(batch); !s.ok()) return s;
  absl::StatusOr<std::string> ctrl_block = ctrl.Finish();
  if (!ctrl_block.ok()) return ctrl_block.status();

  Bz2Writer diff;
  if (absl::Status s = ForEachDiffChunk(old_data, new_data, *steps,
                                        [&](std::string_view chunk) { return diff.Write(chunk); });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> diff_block = diff.Finish();
  if (!diff_block.ok()) return diff_block.status();

  Bz2Writer extra;
  if (absl::Status s = ForEachExtraChunk(
          new_data, *steps, [&](std::string_view chunk) { return extra.Write(chunk); });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> extra_block = extra.Finish();
  if (!extra_block.ok()) return extra_block.status();

  char header[kHeaderSize];
  std::memcpy(header, kMagic.data(), kMagic.size());
  OffOut(static_cast<int64_t>(ctrl_block->size()), header + 8);
  OffOut(static_cast<int64_t>(diff_block->size()), header + 16);
  OffOut(static_cast<int64_t>(new_data.size()), header + 24);
  for (std::string_view part :
       {std::string_view(header, kHeaderSize), std::string_view(*ctrl_block),
        std::string_view(*diff_block), std::string_view(*extra_block)}) {
    if (absl::Status s = patch.Write(part); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Bsdiff40Header> ParseBsdiff40Header(std::string_view patch) {
  if (patch.size() < kHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("bsdiff40 patch of ", patch.size(),
                                                   " bytes is shorter than its 32-byte header"));
  }
  if (patch.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a bsdiff40 patch (bad magic)");
  }
  const Off ctrl_len = OffIn(patch.data() + 8);
  const Off diff_len = OffIn(patch.data() + 16);
  const Off new_size = OffIn(patch.data() + 24);
  if (ctrl_len.negative || diff_len.negative || new_size.negative) {
    return absl::InvalidArgumentError("bsdiff40 header declares a negative length");
  }
  const uint64_t body = patch.size() - kHeaderSize;
  if (ctrl_len.magnitude > body || diff_len.magnitude > body - ctrl_len.magnitude) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bsdiff40 header declares blocks of ", ctrl_len.magnitude, " + ", diff_len.magnitude,
        " bytes but the patch has only ", body, " bytes after the header (truncated?)"));
  }
  return Bsdiff40Header{.ctrl_block_bytes = ctrl_len.magnitude,
                        .diff_block_bytes = diff_len.magnitude,
                        .new_size_bytes = new_size.magnitude};
}

absl::Status Bsdiff40Decode(OldSource& old, std::string_view patch, ByteSink& out,
                            const ApplyOptions& options) {
  absl::StatusOr<Bsdiff40Header> header = ParseBsdiff40Header(patch);
  if (!header.ok()) return header.status();
  if (absl::Status s = CheckDeclaredNewSize(header->new_size_bytes, options); !s.ok()) return s;

  std::string_view body = patch.substr(kHeaderSize);
  Bz2Reader ctrl("bsdiff40 control", body.substr(0, header->ctrl_block_bytes));
  body.remove_prefix(header->ctrl_block_bytes);
  Bz2Reader diff("bsdiff40 diff", body.substr(0, header->diff_block_bytes));
  body.remove_prefix(header->diff_block_bytes);
  Bz2Reader extra("bsdiff40 extra", body);

  StepApplier applier(old, header->new_size_bytes, out);
  while (!applier.done()) {
    char triple[24];
    if (absl::Status s = ctrl.ReadExact(triple, sizeof(triple)); !s.ok()) return s;
    const Off x = OffIn(triple);
    const Off y = OffIn(triple + 8);
    const Off z = OffIn(triple + 16);
    if ((x.negative && x.magnitude != 0) || (y.negative && y.magnitude != 0)) {
      return absl::InvalidArgumentError(absl::StrCat("bsdiff40 control step at new offset ",
                                                     applier.new_pos(), " has a negative length"));
    }
    if (absl::Status s = applier.Apply(
            MatchStep{.diff_len = x.magnitude, .extra_len = y.magnitude, .seek = z.value()}, diff,
            extra);
        !s.ok()) {
      return s;
    }
  }
  return ExpectFullyConsumed({&ctrl, &diff, &extra});
}

}  // namespace edgefleet::delta::internal
