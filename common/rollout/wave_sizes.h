// The text form of a rollout's wave sizes ("10%,50%,100%"), read alike by the CLI (--waves) and
// the server: only the syntax; the server validates the list as a whole
// (server/rollout/wave_plan.h NormalizeWaves).
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "edgefleet/v1/rollout.pb.h"

namespace edgefleet::rollout {

// Parses a wave list such as "10%,50%,100%" or "5,50%,100%" (a bare number is a device count)
// into WaveSpecs with only their sizes set; an empty or blank text gives no waves (the server's
// defaults). InvalidArgument naming the item on a bad one.
absl::StatusOr<std::vector<v1::WaveSpec>> ParseWaveSizes(std::string_view text);

}  // namespace edgefleet::rollout
