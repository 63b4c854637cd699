// The tensor codec's byte planes on the wire. A plane (one byte position of every transformed
// word) is stored either dense, as one zstd frame of its bytes, or sparse, as two frames: the
// lengths of the zero runs before each non-zero byte (varints), and the non-zero bytes. Sparse
// wins when little changed (an int8 fine-tune moves a few percent of the codes, a good prediction
// leaves almost every byte zero): zstd cannot code a byte in less than about a bit, while a run
// length costs bits per change, not per byte.
#pragma once

#include <zstd.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/delta/internal/patch_stream.h"

namespace edgefleet::delta::internal {

// One zstd frame at `level` (clamped to zstd's range) with at most a 2^window_log window, using
// `prefix` as raw-content dictionary and `tuning` over the level's parameters. Empty input gives
// an empty string (no frame).
absl::StatusOr<std::string> CompressFrame(
    std::string_view data, int level, int window_log, std::string_view prefix = {},
    std::span<const std::pair<ZSTD_cParameter, int>> tuning = {});

// One zstd frame of `data` at a quick level, then at `level` only if the quick pass found
// structure: high levels spend their time searching noise (low-rank factors, mantissa bytes)
// for nothing.
absl::StatusOr<std::string> CompressIfStructured(std::string_view data, int level, int window_log);

struct EncodedPlane {
  bool sparse = false;
  std::string dense;   // sparse == false
  std::string gaps;    // sparse == true
  std::string values;  // sparse == true
  uint64_t size() const { return dense.size() + gaps.size() + values.size(); }
};

// Codes `plane` whichever way is smaller at a quick level, then spends `level` on the winner only
// where the quick pass found structure (high levels only spend time on noise).
absl::StatusOr<EncodedPlane> EncodePlane(std::string_view plane, int level, int window_log);

// Reads a plane back, `n` bytes at a time.
class PlaneReader {
 public:
  static std::unique_ptr<PlaneReader> Dense(std::string name, std::string_view frame,
                                            int window_log_max);
  static std::unique_ptr<PlaneReader> Sparse(std::string name, std::string_view gaps,
                                             std::string_view values, int window_log_max);
  virtual ~PlaneReader() = default;

  // Exactly `n` bytes or DataLoss.
  virtual absl::Status Read(char* dst, size_t n) = 0;
  // DataLoss unless the plane's streams ended exactly where its last byte was read.
  virtual absl::Status ExpectEnd() = 0;
};

}  // namespace edgefleet::delta::internal
