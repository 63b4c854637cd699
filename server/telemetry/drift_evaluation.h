// The drift of one model version over one time range: each input feature's and the outputs'
// field histogram (windows merged by adding bins) scored against the version's reference
// profile. Pure: the merged bins and the reference are passed in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/telemetry/drift.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::server::telemetry {

// Windows of a range merged, all binned by one profile.
struct ObservedBins {
  std::string profile_sha256;  // the binning the windows followed
  uint64_t windows = 0;
  std::vector<v1::FeatureWindow> features;  // bins added over the windows
  v1::FeatureWindow outputs;
};

// What a version's drift is measured against, and the binning it applies to: the windows
// binned by `binning_sha256` are compared with `profile`'s histograms. For an uploaded profile
// that is the profile itself; a fleet reference is made of windows binned by the default
// profile, so that is its binning.
struct VersionReference {
  v1::ReferenceProfile profile;
  std::string binning_sha256;
};

// Scores every feature of the reference and the outputs. `observed` holds one entry per
// binning seen in the range; only the entry with the reference's binning is compared (the
// others are counted in other_profile_windows). A feature whose bin count differs from the
// reference's is insufficient data (a profile mismatch, not drift). The point's level is the
// worst level of its scores; it is insufficient data only when all of them are.
v1::DriftPoint EvaluateDrift(const VersionReference& reference,
                             const std::vector<ObservedBins>& observed,
                             const edgefleet::telemetry::DriftThresholds& thresholds);

v1::DriftScore ToProto(const edgefleet::telemetry::DriftScore& score);

}  // namespace edgefleet::server::telemetry
