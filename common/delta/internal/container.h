// The edgefleet delta container: a fixed header that binds a codec payload to the exact old and
// new files (lengths and SHA-256), so a patch is never applied to the wrong base.
//   0  8  "EFDELTA1"
//   8  1  format version (1)
//   9  1  codec id (delta::Codec)
//   10 2  reserved, 0
//   12 8  old length        20 8  new length      (little-endian)
//   28 32 SHA-256 of old    60 32 SHA-256 of new
//   92 .. codec payload
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/delta/delta.h"

namespace edgefleet::delta::internal {

inline constexpr std::string_view kContainerMagic = "EFDELTA1";
inline constexpr uint8_t kContainerVersion = 1;
inline constexpr size_t kContainerHeaderSize = 92;

struct ContainerHeader {
  Codec codec = Codec::kMatchZstd;
  uint64_t old_size_bytes = 0;
  uint64_t new_size_bytes = 0;
  std::string old_sha256;  // raw 32 bytes
  std::string new_sha256;
};

std::string EncodeContainerHeader(const ContainerHeader& header);
// InvalidArgument for a short header, bad magic, unknown version or codec, non-zero reserved.
absl::StatusOr<ContainerHeader> ParseContainerHeader(std::string_view patch);

// Header + payload of a container codec (match-zstd or tensor) into `patch`.
absl::Status ContainerDiff(std::string_view old_data, std::string_view new_data, Codec codec,
                           ByteSink& patch, const DiffOptions& options);
// Checks the base file and declared sizes, decodes the payload into `out` and verifies the
// output's length and digest as it streams.
absl::Status ContainerApply(OldSource& old, std::string_view patch, ByteSink& out,
                            const ApplyOptions& options);

}  // namespace edgefleet::delta::internal
