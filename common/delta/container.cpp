#include "common/delta/internal/container.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/patch_stream.h"

namespace edgefleet::delta::internal {
namespace {

void PutU64(uint64_t v, std::string& out) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetU64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

bool IsContainerCodec(uint8_t id) {
  return id == static_cast<uint8_t>(Codec::kMatchZstd) ||
         id == static_cast<uint8_t>(Codec::kTensor);
}

// Passes bytes through while hashing and counting them; refuses to go past the declared length
// so a codec bug or forged payload cannot write more than the header promised.
class VerifyingSink final : public ByteSink {
 public:
  VerifyingSink(ByteSink& out, uint64_t limit) : out_(out), limit_(limit) {}
  absl::Status Write(std::string_view data) override {
    if (data.size() > limit_ - written_) {
      return absl::DataLossError(
          absl::StrCat("patch produces more than the declared ", limit_, " bytes"));
    }
    written_ += data.size();
    hash_.Update(data);
    return out_.Write(data);
  }
  uint64_t written() const { return written_; }
  std::string Finish() { return hash_.Finish(); }

 private:
  ByteSink& out_;
  uint64_t limit_;
  uint64_t written_ = 0;
  crypto::Sha256 hash_;
};

}  // namespace

std::string EncodeContainerHeader(const ContainerHeader& header) {
  std::string out(kContainerMagic);
  out.push_back(static_cast<char>(kContainerVersion));
  out.push_back(static_cast<char>(header.codec));
  out.append(2, '\0');
  PutU64(header.old_size_bytes, out);
  PutU64(header.new_size_bytes, out);
  out.append(header.old_sha256);
  out.append(header.new_sha256);
  return out;
}

absl::StatusOr<ContainerHeader> ParseContainerHeader(std::string_view patch) {
  if (patch.size() < kContainerHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat("edgefleet delta of ", patch.size(),
                                                   " bytes is shorter than its ",
                                                   kContainerHeaderSize, "-byte header"));
  }
  if (patch.substr(0, kContainerMagic.size()) != kContainerMagic) {
    return absl::InvalidArgumentError("not an edgefleet delta (bad magic)");
  }
  const auto version = static_cast<uint8_t>(patch[8]);
  if (version != kContainerVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported edgefleet delta format version ", version));
  }
  const auto codec = static_cast<uint8_t>(patch[9]);
  if (!IsContainerCodec(codec)) {
    return absl::InvalidArgumentError(absl::StrCat("edgefleet delta has unknown codec id ", codec));
  }
  if (patch[10] != 0 || patch[11] != 0) {
    return absl::InvalidArgumentError("edgefleet delta has non-zero reserved bytes");
  }
  ContainerHeader header;
  header.codec = static_cast<Codec>(codec);
  header.old_size_bytes = GetU64(patch.substr(12, 8));
  header.new_size_bytes = GetU64(patch.substr(20, 8));
  header.old_sha256 = std::string(patch.substr(28, crypto::kSha256Size));
  header.new_sha256 = std::string(patch.substr(60, crypto::kSha256Size));
  return header;
}

absl::Status ContainerDiff(std::string_view old_data, std::string_view new_data, Codec codec,
                           ByteSink& patch, const DiffOptions& options) {
  if (!IsContainerCodec(static_cast<uint8_t>(codec))) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", static_cast<int>(codec), " does not use the container"));
  }
  ContainerHeader header{.codec = codec,
                         .old_size_bytes = old_data.size(),
                         .new_size_bytes = new_data.size(),
                         .old_sha256 = crypto::Sha256Bytes(old_data),
                         .new_sha256 = crypto::Sha256Bytes(new_data)};
  if (absl::Status s = patch.Write(EncodeContainerHeader(header)); !s.ok()) return s;
  return codec == Codec::kMatchZstd ? MatchZstdEncode(old_data, new_data, patch, options)
                                    : TensorEncode(old_data, new_data, patch, options);
}

absl::Status ContainerApply(OldSource& old, std::string_view patch, ByteSink& out,
                            const ApplyOptions& options) {
  absl::StatusOr<ContainerHeader> header = ParseContainerHeader(patch);
  if (!header.ok()) return header.status();
  // A base of the wrong size is refused before it is read at all.
  bool same_base = header->old_size_bytes == old.size();
  if (same_base) {
    absl::StatusOr<std::string> old_sha256 =
        options.old_sha256.empty() ? Sha256Of(old) : options.old_sha256;
    if (!old_sha256.ok()) return old_sha256.status();
    same_base = header->old_sha256 == *old_sha256;
  }
  if (!same_base) {
    return absl::FailedPreconditionError(
        absl::StrCat("patch was made for a different base file (expected ", header->old_size_bytes,
                     " bytes with sha256 ", crypto::ToHex(header->old_sha256), ", have ",
                     old.size(), " bytes)"));
  }
  if (absl::Status s = CheckDeclaredNewSize(header->new_size_bytes, options); !s.ok()) return s;

  VerifyingSink verifying(out, header->new_size_bytes);
  const std::string_view payload = patch.substr(kContainerHeaderSize);
  absl::Status decoded = header->codec == Codec::kMatchZstd
                             ? MatchZstdDecode(old, payload, header->new_size_bytes, verifying)
                             : TensorDecode(old, payload, header->new_size_bytes, verifying);
  if (!decoded.ok()) return decoded;
  if (verifying.written() != header->new_size_bytes) {
    return absl::DataLossError(absl::StrCat("patch produced ", verifying.written(),
                                            " bytes, not the declared ", header->new_size_bytes));
  }
  if (verifying.Finish() != header->new_sha256) {
    return absl::DataLossError(
        "patched output does not match the new file's sha256 recorded in the patch");
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::delta::internal
