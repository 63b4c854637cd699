// bench/swap: hot swaps between two ONNX models while clients call Predict on the agent's local
// Unix-socket API as fast as they can; measures failed requests, Predict latency during swaps
// against steady state, resident memory of the model-holding process and swaps per second.
//
// Two processes, as on a device: the host holds the models (a ModelHost behind the agent's
// InferenceGrpcService on a Unix socket) and swaps them exactly as Updater::Activate does (load
// into a new engine, warm up, flip the shared_ptr); the bench process runs the clients, drives
// the host through its stdin/stdout and reads the host's RSS from /proc/<pid>/status.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::bench {

// What the host serves. Model A is served as version "1", model B as version "2".
struct HostOptions {
  std::string socket_path;
  std::string model_a;
  std::string model_b;
  std::string model_name = "classifier";
  std::string input_name = "input";
  std::vector<int64_t> input_shape = {1, 4};
  // Sleep between two swaps of one batch (0: back to back).
  int swap_interval_ms = 0;
  // Nice value of the thread that loads, warms up and swaps, as the agent's update thread
  // (AgentConfig.update_thread_nice, default 19); 0 leaves it at the inference threads'.
  int update_nice = 19;
  // Experiment (the agent does not do this): malloc_trim(0) after every swap.
  bool trim_after_swap = false;
};

// The host side. Serves A, prints "ready <pid>", then for each line "swap K" on `in` performs K
// swaps (alternating B, A, ...) and prints "swapped D1 D2 ... DK" (seconds per swap: load, warm
// up, flip); "heap" prints "heap BYTES ENGINES" (malloc's bytes in use, engines
// loaded that still exist); "quit" or end of input stops it.
// Errors are printed as "error MESSAGE" and end it.
int RunSwapHost(const HostOptions& options, std::istream& in, std::ostream& out);

struct BenchOptions {
  std::string host_binary;  // a binary whose `--host` mode calls RunSwapHost
  HostOptions host;         // socket_path is chosen by the bench when empty
  int swaps = 1000;
  int clients = 4;
  int rss_every_swaps = 10;  // the host's RSS is read after every this many swaps
  double warmup_seconds = 1.0;
  // Steady windows (no swap) interleave with the swaps: one before the first swap, one after
  // the first 10 swaps, then `rounds` rounds of (swaps / rounds swaps, one window). This is
  // their total length.
  double steady_seconds = 24.0;
  int rounds = 10;
};

struct LatencySummary {
  uint64_t calls = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  double calls_per_second() const { return seconds > 0 ? static_cast<double>(calls) / seconds : 0; }
};

struct SwapReport {
  int swaps = 0;
  int clients = 0;
  int64_t host_pid = 0;
  // Requests: failed = non-OK status; wrong = OK but not the exact answer of the version it
  // names (or a version that was never served).
  uint64_t requests = 0;
  uint64_t failed_requests = 0;
  uint64_t wrong_answers = 0;
  uint64_t answers_v1 = 0;  // OK answers by version "1" (model A) and "2" (model B)
  uint64_t answers_v2 = 0;
  std::string first_error;
  // Client-side Predict latency while swaps run back to back, and in the steady windows
  // between them (no swap running), pooled.
  LatencySummary steady, swapping;
  int steady_windows = 0;
  double p99_ratio = 0;  // swapping.p99 / steady.p99
  // Swaps, timed by the host around load + warm-up + flip.
  double swap_seconds_total = 0;
  double swap_p50_ms = 0;
  double swap_max_ms = 0;
  double swaps_per_second = 0;    // swaps / swap_seconds_total
  double swap_phase_seconds = 0;  // wall time of the whole swap phase, as the clients saw it
  // Host RSS (VmRSS, KiB) from /proc/<pid>/status: the median of the readings (every 100 ms)
  // of a steady window, before the swaps, after the first min(10, swaps) swaps, after all.
  int64_t rss_kib_before_swaps = 0;
  int rss_early_swaps = 0;
  int64_t rss_kib_early = 0;
  int64_t rss_kib_after_all = 0;
  double rss_growth_pct = 0;  // after_all against early
  // The same median after every steady window that follows swaps: (swaps done, KiB). Shows
  // whether memory keeps growing or levels off.
  std::vector<std::pair<int, int64_t>> rss_settled;
  // At the end of the same windows, the bytes the host's malloc has handed out and not had back
  // (mallinfo2 over all arenas), KiB: a leak grows this; memory the allocator keeps after frees
  // grows RSS only.
  std::vector<std::pair<int, int64_t>> heap_settled;
  // At the same points, how many of the engines the host loaded still exist (1 when every
  // replaced model has been freed).
  std::vector<std::pair<int, int64_t>> engines_settled;
  // Single readings right after every rss_every_swaps swaps, while replaced models may still be
  // held by requests in flight: (swaps done, KiB), and their maximum.
  std::vector<std::pair<int, int64_t>> rss_curve;
  int64_t rss_kib_max = 0;
};

absl::StatusOr<SwapReport> RunSwapBench(const BenchOptions& options);

std::string ReportJson(const SwapReport& report);
// A human-readable summary with the targets of issue 10 and PASS/FAIL per target.
std::string ReportText(const SwapReport& report);

}  // namespace edgefleet::bench
