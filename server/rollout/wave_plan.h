// A rollout's waves, parsed, validated and with every default filled in, and how many devices
// each wave covers. Pure: no database, no clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/labels.h"
#include "common/rollout/wave_sizes.h"
#include "edgefleet/v1/rollout.pb.h"

namespace edgefleet::server::rollout {

// Percentages are kept in basis points (1% = 100) so that boundaries compare exactly.
inline constexpr int64_t kBasisPointsPerPercent = 100;
inline constexpr int64_t kAllBasisPoints = 100 * kBasisPointsPerPercent;

// The inference gates' part of a GateSpec, defaults applied (gates.h says what each compares).
struct InferenceThresholds {
  bool enabled = true;
  double max_p99_ratio = 1.2;
  double max_p50_ratio = 1.1;
  // Percentage points in basis points (0.5 points = 50), so that the boundary compares exactly.
  int64_t max_error_increase_bp = 50;
  double max_output_psi = 0.1;
  uint64_t min_inferences = 1000;  // per side
  uint64_t min_devices = 10;       // per side

  bool operator==(const InferenceThresholds&) const = default;
};

// A GateSpec with its defaults applied.
struct GateThresholds {
  int64_t max_install_failure_bp = 5 * kBasisPointsPerPercent;
  uint64_t min_finished_devices = 3;
  int64_t max_probation_failure_bp = 5 * kBasisPointsPerPercent;
  std::optional<uint64_t> max_probation_failures;  // no count limit when unset
  std::chrono::seconds serving_timeout = std::chrono::hours(1);
  int64_t max_timeout_bp = 10 * kBasisPointsPerPercent;
  InferenceThresholds inference;

  bool operator==(const GateThresholds&) const = default;
};

struct Wave {
  // Cumulative size: a share of the matching devices (percent_bp > 0) or a device count.
  int64_t percent_bp = 0;
  uint64_t device_count = 0;
  uint64_t min_devices = 0;
  std::chrono::seconds soak{0};
  GateThresholds gates;

  bool operator==(const Wave&) const = default;
};

struct WavePlan {
  std::vector<Wave> waves;  // never empty; the last one is 100%

  bool operator==(const WavePlan&) const = default;
};

inline constexpr std::chrono::seconds kDefaultSoak = std::chrono::hours(1);
inline constexpr std::chrono::seconds kMaxSoak = std::chrono::hours(24 * 30);
inline constexpr std::chrono::seconds kMaxServingTimeout = std::chrono::hours(24 * 7);

// 1% (at least 1 device), 10%, 50%, 100%, soak 1 hour each, default gates.
WavePlan DefaultPlan();
// What `deploy create` runs: one wave of 100%, no soak, default gates without the inference
// gates (a deployment sends everything at once: there is no canary to compare).
WavePlan SingleWavePlan();

// The text form of wave sizes ("10%,50%,100%") lives in common/ so that the CLI parses --waves
// without linking the server; the list is validated as a whole by NormalizeWaves.
using ::edgefleet::rollout::ParseWaveSizes;

// Rollout-wide settings that waves without their own take.
struct WaveDefaults {
  std::optional<std::chrono::seconds> soak;
  v1::GateSpec gates;
};

// Validates `specs` and fills in the defaults: each field a wave leaves unset comes from
// `defaults`, then from the built-in default. No waves means DefaultPlan() (with `defaults`
// applied). InvalidArgument ("waves[2]: ...") when a percent is outside (0, 100] or has more than
// two decimals, a wave sets both or neither of percent and device_count, sizes of the same kind
// decrease, the last wave is not 100%, a soak is negative or over 30 days, a threshold is not a
// percentage, an inference ratio is not finite and > 0, a PSI is not finite and >= 0, a minimum
// is 0, or there are more than RequestLimits::kRolloutWaves waves.
absl::StatusOr<WavePlan> NormalizeWaves(const std::vector<v1::WaveSpec>& specs,
                                        const WaveDefaults& defaults = {});

// The normalised wave as stored in Rollout.waves[i].spec; NormalizeWaves of these gives the same
// plan back.
v1::WaveSpec ToProto(const Wave& wave);
v1::GateSpec ToProto(const GateThresholds& gates);

// How many devices waves 0..`index` cover together when `matching` devices match:
// ceil(percent * matching) or the device count, at least min_devices, at most `matching`, and
// never fewer than the wave before covers. The last wave covers every matching device.
uint64_t CumulativeTarget(const WavePlan& plan, size_t index, uint64_t matching);

// "10%", "5 devices": how messages name a wave's size.
std::string DescribeSize(const Wave& wave);

// A validated CreateRolloutRequest.
struct RolloutDefinition {
  std::string name;
  std::string model_name;
  std::string version;
  std::string label_selector;  // as given
  Labels selector;
  WavePlan plan;
  v1::RolloutFailureAction on_failure = v1::ROLLOUT_FAILURE_ACTION_PAUSE;
  // What the targeted devices are asked to capture (validated); disabled: nothing.
  v1::CaptureSpec capture;
};

// Validates names (common/core/names.h), the selector, the waves and the capture request
// (capture::ValidateCaptureSpec); UNSPECIFIED on_failure becomes PAUSE. InvalidArgument naming
// the field.
absl::StatusOr<RolloutDefinition> ValidateCreateRollout(const v1::CreateRolloutRequest& request);

// The definition of a stored rollout (its name, model, version, selector, on_failure and the
// normalised specs in waves[i].spec), validated again. Internal when the stored rollout does not
// validate (the store is corrupt); the controller must not act on it.
absl::StatusOr<RolloutDefinition> DefinitionOf(const v1::Rollout& rollout);
// The rollout as created: definition fields and every wave's normalised spec, state PENDING.
v1::Rollout NewRollout(const RolloutDefinition& definition);

}  // namespace edgefleet::server::rollout
