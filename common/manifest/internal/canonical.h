// The field layout shared by every canonical encoding in common/manifest (manifests, delegations,
// timestamps): magic, then fields in a fixed order as tag (1 byte) + big-endian length (4 bytes) +
// value; integers are 8-byte big-endian. Internal to common/manifest.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet::manifest::internal {

inline constexpr size_t kMaxFieldBytes = 4096;

class CanonicalWriter {
 public:
  explicit CanonicalWriter(std::string_view magic) : out_(magic) {}
  void Bytes(uint8_t tag, std::string_view value);
  void U64(uint8_t tag, uint64_t value);
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads fields in order; `what` names the encoding in errors ("manifest", "delegation", ...).
class CanonicalReader {
 public:
  CanonicalReader(std::string_view in, std::string_view what) : in_(in), what_(what) {}
  // InvalidArgument unless the input starts with `magic`; consumes it.
  absl::Status Magic(std::string_view magic);
  // The next field, which must carry `tag`.
  absl::StatusOr<std::string_view> Bytes(uint8_t tag);
  absl::StatusOr<uint64_t> U64(uint8_t tag);
  // InvalidArgument when bytes are left over.
  absl::Status End() const;
  // True when every byte was read (fields added later are optional at the end).
  bool AtEnd() const { return in_.empty(); }

 private:
  std::string_view in_;
  std::string what_;
};

}  // namespace edgefleet::manifest::internal
