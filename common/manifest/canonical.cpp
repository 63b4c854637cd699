#include "common/manifest/internal/canonical.h"

#include "absl/strings/str_cat.h"

namespace edgefleet::manifest::internal {
namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t ReadBigEndian(std::string_view b) {
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

}  // namespace

void CanonicalWriter::Bytes(uint8_t tag, std::string_view value) {
  out_.push_back(static_cast<char>(tag));
  PutU32(&out_, static_cast<uint32_t>(value.size()));
  out_.append(value);
}

void CanonicalWriter::U64(uint8_t tag, uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  Bytes(tag, s);
}

absl::Status CanonicalReader::Magic(std::string_view magic) {
  if (in_.substr(0, magic.size()) != magic) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a canonical edgefleet ", what_, " (bad magic)"));
  }
  in_.remove_prefix(magic.size());
  return absl::OkStatus();
}

absl::StatusOr<std::string_view> CanonicalReader::Bytes(uint8_t tag) {
  if (in_.size() < 5) return absl::InvalidArgumentError(absl::StrCat(what_, " truncated"));
  if (static_cast<uint8_t>(in_[0]) != tag) {
    return absl::InvalidArgumentError(
        absl::StrCat(what_, " field ", static_cast<int>(tag), " missing or out of order"));
  }
  uint32_t len = static_cast<uint32_t>(ReadBigEndian(in_.substr(1, 4)));
  if (len > kMaxFieldBytes || in_.size() - 5 < len) {
    return absl::InvalidArgumentError(absl::StrCat(what_, " field length out of bounds"));
  }
  std::string_view value = in_.substr(5, len);
  in_.remove_prefix(5 + len);
  return value;
}

absl::StatusOr<uint64_t> CanonicalReader::U64(uint8_t tag) {
  auto value = Bytes(tag);
  if (!value.ok()) return value.status();
  if (value->size() != 8) {
    return absl::InvalidArgumentError(absl::StrCat(what_, " integer field is not 8 bytes"));
  }
  return ReadBigEndian(*value);
}

absl::Status CanonicalReader::End() const {
  if (!in_.empty()) return absl::InvalidArgumentError(absl::StrCat(what_, " has trailing bytes"));
  return absl::OkStatus();
}

}  // namespace edgefleet::manifest::internal
