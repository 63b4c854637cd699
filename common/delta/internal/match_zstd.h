// zstd settings shared by the match-zstd codec and `auto`'s full-file baseline.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet::delta::internal {

// Largest zstd window the encoder uses and the decoder accepts (128 MiB, zstd's own default
// decoder limit): a hostile frame cannot make a device reserve more.
inline constexpr int kMaxZstdWindowLog = 27;

// Size of `data` compressed as one zstd frame at `level` with long-distance matching and a
// window sized to the input, as match-zstd compresses its streams. Output is discarded.
absl::StatusOr<uint64_t> ZstdCompressedSize(std::string_view data, int level);

}  // namespace edgefleet::delta::internal
