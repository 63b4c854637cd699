#include "server/rollout/gates.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edgefleet::server::rollout {
namespace {

std::string Percent(double value) { return absl::StrFormat("%.2f%%", value); }

double PercentOf(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

// part / whole > bp / 10000, exactly.
bool Above(uint64_t part, uint64_t whole, int64_t bp) {
  return part * static_cast<uint64_t>(kAllBasisPoints) > static_cast<uint64_t>(bp) * whole;
}

v1::GateResult Result(v1::Gate gate, v1::GateOutcome outcome, double value, double threshold,
                      uint64_t devices, uint64_t min_devices, std::string detail) {
  v1::GateResult result;
  result.set_gate(gate);
  result.set_result(outcome);
  result.set_value(value);
  result.set_threshold(threshold);
  result.set_devices(devices);
  result.set_min_devices(min_devices);
  result.set_detail(std::move(detail));
  return result;
}

// The gates over finished devices: a failure share (and optionally a count) once enough
// devices finished.
struct FinishedGate {
  v1::Gate gate;
  const char* what;  // "failed or were refused the install"
  uint64_t bad;
  int64_t max_bp;
};

v1::GateResult EvaluateFinished(const FinishedGate& g, const WaveCounts& counts,
                                uint64_t min_needed) {
  const uint64_t finished = counts.finished();
  const double threshold = static_cast<double>(g.max_bp) / kBasisPointsPerPercent;
  const double value = PercentOf(g.bad, finished);
  if (counts.targeted == 0 || finished < min_needed) {
    return Result(g.gate, v1::GATE_OUTCOME_INCONCLUSIVE, value, threshold, finished, min_needed,
                  absl::StrCat(finished, " of ", counts.targeted, " devices finished; ", min_needed,
                               " needed"));
  }
  const bool fail = Above(g.bad, finished, g.max_bp);
  return Result(g.gate, fail ? v1::GATE_OUTCOME_FAIL : v1::GATE_OUTCOME_PASS, value, threshold,
                finished, min_needed,
                absl::StrCat(g.bad, " of ", finished, " finished devices ", g.what, ": ",
                             Percent(value), fail ? " > " : " <= ", Percent(threshold)));
}

}  // namespace

WaveCounts TallyWave(const std::vector<DeviceProgress>& devices, Clock::TimePoint now,
                     std::chrono::seconds serving_timeout) {
  WaveCounts counts;
  counts.targeted = devices.size();
  for (const DeviceProgress& device : devices) {
    switch (device.outcome) {
      case DeviceOutcome::kWaiting:
        if (now >= device.targeted_at + serving_timeout) ++counts.timed_out;
        break;
      case DeviceOutcome::kServing:
        ++counts.serving;
        break;
      case DeviceOutcome::kInstallFailed:
        ++counts.install_failed;
        break;
      case DeviceOutcome::kRefused:
        ++counts.refused;
        break;
      case DeviceOutcome::kProbationFailed:
        ++counts.probation_failed;
        break;
      case DeviceOutcome::kRolledBack:
        ++counts.rolled_back;
        break;
    }
  }
  return counts;
}

std::vector<v1::GateResult> EvaluateGates(const GateThresholds& gates, const WaveCounts& counts) {
  // A device that timed out may never report: waiting for it would hold the wave forever
  // (the timeout gate judges it instead).
  const uint64_t can_report = counts.targeted - std::min(counts.targeted, counts.timed_out);
  const uint64_t min_needed =
      std::max<uint64_t>(1, std::min(gates.min_finished_devices, can_report));
  std::vector<v1::GateResult> results;
  results.push_back(
      EvaluateFinished({v1::GATE_INSTALL_FAILURES, "failed or refused the install",
                        counts.install_failed + counts.refused, gates.max_install_failure_bp},
                       counts, min_needed));
  results.push_back(EvaluateFinished({v1::GATE_PROBATION_FAILURES, "failed probation",
                                      counts.probation_failed, gates.max_probation_failure_bp},
                                     counts, min_needed));

  if (gates.max_probation_failures.has_value()) {
    const uint64_t max = *gates.max_probation_failures;
    const uint64_t finished = counts.finished();
    const auto value = static_cast<double>(counts.probation_failed);
    const auto threshold = static_cast<double>(max);
    if (counts.targeted == 0 || finished < min_needed) {
      results.push_back(Result(v1::GATE_PROBATION_FAILURE_COUNT, v1::GATE_OUTCOME_INCONCLUSIVE,
                               value, threshold, finished, min_needed,
                               absl::StrCat(finished, " of ", counts.targeted,
                                            " devices finished; ", min_needed, " needed")));
    } else {
      const bool fail = counts.probation_failed > max;
      results.push_back(Result(v1::GATE_PROBATION_FAILURE_COUNT,
                               fail ? v1::GATE_OUTCOME_FAIL : v1::GATE_OUTCOME_PASS, value,
                               threshold, finished, min_needed,
                               absl::StrCat(counts.probation_failed, " devices failed probation",
                                            fail ? " > " : " <= ", max)));
    }
  }

  // Timeouts are over every targeted device: a device that never reports still counts.
  const double threshold = static_cast<double>(gates.max_timeout_bp) / kBasisPointsPerPercent;
  const double value = PercentOf(counts.timed_out, counts.targeted);
  const std::string limit = absl::StrCat(gates.serving_timeout.count(), " s");
  if (counts.targeted == 0) {
    results.push_back(Result(v1::GATE_TIMEOUTS, v1::GATE_OUTCOME_INCONCLUSIVE, value, threshold, 0,
                             1, "no device targeted"));
  } else if (Above(counts.timed_out, counts.targeted, gates.max_timeout_bp)) {
    results.push_back(Result(
        v1::GATE_TIMEOUTS, v1::GATE_OUTCOME_FAIL, value, threshold, counts.targeted, 1,
        absl::StrCat(counts.timed_out, " of ", counts.targeted, " devices not serving within ",
                     limit, ": ", Percent(value), " > ", Percent(threshold))));
  } else if (counts.waiting() > counts.timed_out) {
    results.push_back(Result(
        v1::GATE_TIMEOUTS, v1::GATE_OUTCOME_INCONCLUSIVE, value, threshold, counts.targeted, 1,
        absl::StrCat(counts.waiting() - counts.timed_out, " of ", counts.targeted,
                     " devices still within their ", limit, " to reach serving")));
  } else {
    results.push_back(Result(
        v1::GATE_TIMEOUTS, v1::GATE_OUTCOME_PASS, value, threshold, counts.targeted, 1,
        absl::StrCat(counts.timed_out, " of ", counts.targeted, " devices not serving within ",
                     limit, ": ", Percent(value), " <= ", Percent(threshold))));
  }
  return results;
}

v1::GateOutcome Overall(const std::vector<v1::GateResult>& results) {
  bool inconclusive = false;
  for (const v1::GateResult& r : results) {
    if (r.result() == v1::GATE_OUTCOME_FAIL) return v1::GATE_OUTCOME_FAIL;
    inconclusive |=
        r.result() != v1::GATE_OUTCOME_PASS && r.result() != v1::GATE_OUTCOME_NOT_APPLICABLE;
  }
  return inconclusive ? v1::GATE_OUTCOME_INCONCLUSIVE : v1::GATE_OUTCOME_PASS;
}

void SetCounts(const WaveCounts& counts, v1::WaveStatus* status) {
  status->set_targeted(counts.targeted);
  status->set_serving(counts.serving);
  status->set_failed(counts.install_failed + counts.refused + counts.probation_failed);
  status->set_install_failed(counts.install_failed);
  status->set_refused(counts.refused);
  status->set_probation_failed(counts.probation_failed);
  status->set_in_progress(counts.waiting());
  status->set_rolled_back(counts.rolled_back);
  status->set_timed_out(counts.timed_out);
}

}  // namespace edgefleet::server::rollout
