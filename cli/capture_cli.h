// edgefleetctl's capture pieces: the --capture-* flags of `rollout create` and `deploy create`,
// and `capture export` (every matching capture's tensors as .npy files plus index.jsonl).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/admin_client.h"
#include "cli/args.h"
#include "edgefleet/v1/capture.pb.h"

namespace edgefleet::cli {

// --capture-sample-rate R, --capture-random R, --capture-confidence-below X,
// --capture-out-of-range (no value), --capture-max-bytes-per-day N (default 10 MiB),
// --capture-upload-window H-H (hours of the device's local day, e.g. 1-5 or 22-5).
extern const std::set<std::string> kCaptureFlags;

// The capture request the flags ask for; nullopt when none is given. InvalidArgument naming the
// flag on a bad value (the server validates the whole spec again).
absl::StatusOr<std::optional<v1::CaptureSpec>> CaptureSpecFromFlags(const ParsedArgs& args);

// The .npy (format 1.0) bytes of a float32 C-order array of `shape`.
std::string NpyBytes(const std::vector<int64_t>& shape, const std::vector<float>& values);

// "-": a capture's trigger without its enum prefix, lower case ("low_confidence").
std::string TriggerName(v1::CaptureTrigger trigger);

struct ExportResult {
  uint64_t written = 0;  // captures written now
  uint64_t skipped = 0;  // already in DIR/index.jsonl (a re-run is incremental)
};

// Writes every capture `filter` lists into `dir` (created if missing): per capture, its inputs
// as <id>_input<k>.npy and outputs as <id>_output<k>.npy, and a line in index.jsonl (id, device,
// model, version, captured_at, trigger, files, names, shapes, an output summary). Captures whose
// id index.jsonl already names are skipped; the .npy files of a capture are written (atomically)
// before its index line, so an interrupted export is completed by running it again.
absl::StatusOr<ExportResult> ExportCaptures(AdminClient& admin, v1::ListCapturesRequest filter,
                                            const std::string& dir);

}  // namespace edgefleet::cli
