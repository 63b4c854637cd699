#include "agent/update/probation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgefleet::agent {
namespace {

std::string Millis(std::optional<double> seconds) {
  return seconds ? absl::StrFormat("%.1fms", *seconds * 1000) : "n/a";
}

}  // namespace

ProbationResult JudgeProbation(const ProbationPolicy& policy, const ProbationEvidence& e) {
  const bool errors_bad =
      e.answers > 0 &&
      static_cast<double>(e.errors) > policy.max_error_ratio * static_cast<double>(e.answers);
  bool latency_bad = false;
  if (e.p95_seconds && e.previous_p95_seconds &&
      e.latency_samples >= ProbationPolicy::kMinLatencySamples &&
      e.previous_latency_samples >= ProbationPolicy::kMinLatencySamples) {
    const double baseline =
        std::max(*e.previous_p95_seconds, ProbationPolicy::kLatencyFloorSeconds);
    latency_bad = *e.p95_seconds > policy.latency_ratio * baseline;
  }
  ProbationResult result;
  result.detail =
      absl::StrCat("errors ", e.errors, "/", e.answers, ", non-finite ", e.non_finite, ", p95 ",
                   Millis(e.p95_seconds), " vs ", Millis(e.previous_p95_seconds), " (limit ",
                   absl::StrFormat("%g", policy.latency_ratio), "x)");
  const bool bad = errors_bad || latency_bad || e.non_finite > 0;
  const bool enough = e.answers >= policy.min_requests;
  const bool window_over = e.elapsed >= policy.window;
  const bool extension_over = e.elapsed >= policy.window * ProbationPolicy::kMaxWindows;
  if (e.non_finite > 0 || (bad && enough)) {
    result.verdict = ProbationVerdict::kFailed;
  } else if (window_over && (e.answers == 0 || enough || extension_over)) {
    result.verdict = bad ? ProbationVerdict::kFailed : ProbationVerdict::kPassed;
  }
  absl::StrAppend(&result.detail, " after ",
                  std::chrono::duration_cast<std::chrono::seconds>(e.elapsed).count(), "s");
  return result;
}

}  // namespace edgefleet::agent
