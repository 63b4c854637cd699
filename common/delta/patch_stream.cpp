#include "common/delta/internal/patch_stream.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"

namespace edgefleet::delta::internal {

absl::Status StreamReader::Fill() {
  begin_ = end_ = 0;
  while (end_ == 0 && !eof_) {
    size_t produced = 0;
    if (absl::Status s = Refill(buffer_.data(), buffer_.size(), &produced, &eof_); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(name_, " stream: ", s.message()));
    }
    end_ = produced;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string_view> StreamReader::Read(size_t max) {
  if (begin_ == end_) {
    if (absl::Status s = Fill(); !s.ok()) return s;
    if (end_ == 0) return absl::DataLossError(absl::StrCat(name_, " stream ends early"));
  }
  const size_t n = std::min(max, end_ - begin_);
  std::string_view view(buffer_.data() + begin_, n);
  begin_ += n;
  return view;
}

absl::Status StreamReader::ReadExact(char* dst, size_t n) {
  while (n > 0) {
    absl::StatusOr<std::string_view> chunk = Read(n);
    if (!chunk.ok()) return chunk.status();
    std::memcpy(dst, chunk->data(), chunk->size());
    dst += chunk->size();
    n -= chunk->size();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> StreamReader::AtEnd() {
  if (begin_ != end_) return false;
  if (absl::Status s = Fill(); !s.ok()) return s;
  return end_ == 0;
}

ZstdStreamReader::ZstdStreamReader(std::string name, std::string_view compressed,
                                   int window_log_max, std::string_view prefix)
    : StreamReader(std::move(name)),
      in_{compressed.data(), compressed.size(), 0},
      window_log_max_(window_log_max),
      prefix_(prefix) {}

absl::Status ZstdStreamReader::Refill(char* dst, size_t capacity, size_t* produced, bool* eof) {
  if (in_.size == 0) {
    *eof = true;
    return absl::OkStatus();
  }
  if (dctx_ == nullptr) {
    dctx_.reset(ZSTD_createDCtx());
    if (dctx_ == nullptr) return absl::ResourceExhaustedError("cannot create a zstd context");
    size_t rc = ZSTD_DCtx_setParameter(dctx_.get(), ZSTD_d_windowLogMax, window_log_max_);
    if (!ZSTD_isError(rc) && !prefix_.empty()) {
      rc = ZSTD_DCtx_refPrefix(dctx_.get(), prefix_.data(), prefix_.size());
    }
    if (ZSTD_isError(rc)) {
      return absl::InternalError(absl::StrCat("zstd setup: ", ZSTD_getErrorName(rc)));
    }
  }
  ZSTD_outBuffer out{dst, capacity, 0};
  for (;;) {
    if (frame_complete_ && in_.pos == in_.size) {
      *eof = true;
      return absl::OkStatus();
    }
    const size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in_);
    if (ZSTD_isError(rc)) {
      return absl::DataLossError(absl::StrCat("corrupt zstd data: ", ZSTD_getErrorName(rc)));
    }
    frame_complete_ = rc == 0;
    *produced = out.pos;
    if (out.pos > 0) return absl::OkStatus();
    if (!frame_complete_ && in_.pos == in_.size) {
      return absl::DataLossError("zstd data is truncated");
    }
  }
}

absl::StatusOr<uint64_t> ReadVarint(StreamReader& in) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    char c;
    if (absl::Status s = in.ReadExact(&c, 1); !s.ok()) return s;
    const auto byte = static_cast<uint8_t>(c);
    if (shift == 63 && byte > 1) break;
    v |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return v;
  }
  return absl::DataLossError(absl::StrCat(in.name(), " stream holds an over-long varint"));
}

absl::StatusOr<std::string> Sha256Of(OldSource& old) {
  crypto::Sha256 hasher;
  absl::Status read =
      ForEachPiece(old, 0, old.size(), [&](std::string_view piece) { hasher.Update(piece); });
  if (!read.ok()) return read;
  return hasher.Finish();
}

absl::Status StepApplier::Apply(const MatchStep& step, StreamReader& diff, StreamReader& extra) {
  // A genuine encoder advances the new cursor between steps, so there are at most new_size + 1;
  // the bound keeps a hostile stream of empty steps from spinning.
  if (++steps_ > new_size_ + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("more control steps than the declared new size ", new_size_, " allows"));
  }
  const uint64_t new_left = new_size_ - new_pos_;
  if (step.diff_len > new_left || step.extra_len > new_left - step.diff_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("control step at new offset ", new_pos_, " (diff ", step.diff_len, ", extra ",
                     step.extra_len, ") runs past the declared new size ", new_size_));
  }
  if (step.diff_len > old_.size() - old_pos_) {
    return absl::InvalidArgumentError(
        absl::StrCat("control step reads old bytes [", old_pos_, ", +", step.diff_len,
                     ") outside the old file of ", old_.size(), " bytes"));
  }
  const uint64_t after_diff = old_pos_ + step.diff_len;
  // The seek must land inside [0, old size]; computed without overflow in either direction.
  const bool backwards = step.seek < 0;
  const uint64_t magnitude =
      backwards ? uint64_t{0} - static_cast<uint64_t>(step.seek) : static_cast<uint64_t>(step.seek);
  if (backwards ? magnitude > after_diff : magnitude > old_.size() - after_diff) {
    return absl::InvalidArgumentError(
        absl::StrCat("control step seeks by ", step.seek, " from old offset ", after_diff,
                     ", outside the old file of ", old_.size(), " bytes"));
  }

  for (uint64_t done = 0; done < step.diff_len;) {
    absl::StatusOr<std::string_view> chunk =
        diff.Read(static_cast<size_t>(std::min<uint64_t>(scratch_.size(), step.diff_len - done)));
    if (!chunk.ok()) return chunk.status();
    absl::StatusOr<std::string_view> base = old_.Read(old_pos_ + done, chunk->size());
    if (!base.ok()) return base.status();
    const auto* old = reinterpret_cast<const uint8_t*>(base->data());
    for (size_t i = 0; i < chunk->size(); ++i) {
      scratch_[i] = static_cast<char>(static_cast<uint8_t>((*chunk)[i]) + old[i]);
    }
    if (absl::Status s = out_.Write(std::string_view(scratch_.data(), chunk->size())); !s.ok()) {
      return s;
    }
    done += chunk->size();
  }
  for (uint64_t done = 0; done < step.extra_len;) {
    absl::StatusOr<std::string_view> chunk = extra.Read(
        static_cast<size_t>(std::min<uint64_t>(kStreamBufferBytes, step.extra_len - done)));
    if (!chunk.ok()) return chunk.status();
    if (absl::Status s = out_.Write(*chunk); !s.ok()) return s;
    done += chunk->size();
  }
  new_pos_ += step.diff_len + step.extra_len;
  old_pos_ = backwards ? after_diff - magnitude : after_diff + magnitude;
  return absl::OkStatus();
}

}  // namespace edgefleet::delta::internal

namespace edgefleet::delta::internal {

absl::Status CheckDeclaredNewSize(uint64_t declared, const ApplyOptions& options) {
  if (options.expected_new_size_bytes != 0 && declared != options.expected_new_size_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("patch declares a new file of ", declared,
                                                   " bytes but ", options.expected_new_size_bytes,
                                                   " bytes are expected"));
  }
  if (declared > options.max_new_size_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("patch declares a new file of ", declared,
                                                   " bytes, over the limit of ",
                                                   options.max_new_size_bytes));
  }
  return absl::OkStatus();
}

absl::Status ExpectFullyConsumed(std::initializer_list<StreamReader*> readers) {
  for (StreamReader* reader : readers) {
    absl::StatusOr<bool> at_end = reader->AtEnd();
    if (!at_end.ok()) return at_end.status();
    if (!*at_end) {
      return absl::InvalidArgumentError(
          absl::StrCat(reader->name(), " stream has data past the declared new size"));
    }
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::delta::internal
