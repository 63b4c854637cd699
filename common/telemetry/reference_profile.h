// Reference profiles: the bin edges a model version's telemetry is binned by and the reference
// distribution its drift is measured against. Server, agent and CLI share this file so that they
// agree on the default binning, on a profile's canonical bytes and SHA-256, and on what a valid
// profile is.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::telemetry {

// The features telemetry watches of a model: from its first input's declared shape, the last
// dimension of a vector input ([F] or [N, F]) or the channels of an image input ([N, C, H, W]).
// 0 — no feature histograms — for other shapes, a feature dimension left open (-1), or more
// than RequestLimits::kTelemetryFeatures features.
size_t FeatureCountOf(const v1::ModelVersion& metadata);

// The classes of a classifier: its first output's last dimension when it is
// 2..RequestLimits::kTelemetryBins; 0 for a score output (binned like a feature).
size_t ClassCountOf(const v1::ModelVersion& metadata);

// The code-defined edges of the default binning: a bin [-1e-3, 1e-3) around 0, then ten
// log-spaced edges per decade (Renard R10 mantissas) up to +-1e4 on both sides; 142 edges.
// Built from exact decimal literals, so every device computes the same doubles.
const std::vector<double>& DefaultEdges();
// One bin per class: class c falls in [c - 0.5, c + 0.5).
std::vector<double> ClassEdges(size_t classes);

// The default profile of a version without an uploaded one (source DEFAULT, edges, no bins):
// DefaultEdges for each feature and a score output, class bins for a classifier. Its
// profile_sha256 is set like any profile's.
v1::ReferenceProfile DefaultProfile(const v1::ModelVersion& metadata);

// The canonical bytes of a profile, profile_sha256 left out: magic "EFRP1", then source,
// samples, windows, the feature count and each feature followed by the outputs, as 8-byte
// big-endian integers (doubles by their IEEE-754 bits): count of edges, edges, count of bins,
// bins, min, max. Protobuf serialization is not canonical, so it is never hashed.
std::string CanonicalEncoding(const v1::ReferenceProfile& profile);
// SHA-256 (32 raw bytes) of CanonicalEncoding.
std::string ProfileSha256(const v1::ReferenceProfile& profile);

// The profile that windows binned by `profile` carry the SHA-256 of: an uploaded or default
// profile is its own binning; a fleet profile was merged from default-binned windows, so its
// binning is the default profile with its edges.
v1::ReferenceProfile BinningOf(const v1::ReferenceProfile& profile);

// The edges of feature `i` and of the outputs of a profile (any source): what the server
// rebuilds FeatureHistograms from window bins with (FeatureHistogram::FromParts).
std::vector<double> FeatureEdges(const v1::ReferenceProfile& profile, size_t i);
std::vector<double> OutputEdges(const v1::ReferenceProfile& profile);

// Whether a profile is one the server stores for a version with `feature_count` features: at
// most kTelemetryFeatures features and exactly `feature_count`, each histogram's edges finite,
// strictly increasing and at most FeatureHistogram::kMaxEdges, bins = edges + 1 (or none for a
// default profile), every feature's bins summing to `samples`, min <= max when it has values.
// InvalidArgument naming the part that is wrong.
absl::Status ValidateProfile(const v1::ReferenceProfile& profile, size_t feature_count);

// An uploaded profile from a sample: `features` row by row (samples x feature_count, what
// ExtractFeatures gives), `outputs` one value per sample that the model answered (what
// ExtractOutputs gives). Each feature gets its decile edges, its reference bins, min and max;
// the outputs get class bins (`classes` > 0) or decile edges. `samples` is the row count (or the
// output count, when the model answers several values per row). profile_sha256 is set.
// InvalidArgument when the sample holds no row.
absl::StatusOr<v1::ReferenceProfile> ComputeProfile(std::span<const double> features,
                                                    size_t feature_count,
                                                    std::span<const double> outputs,
                                                    size_t classes);

// A fleet profile: the bins of `windows` (default-binned windows of one version) added up over
// `binning`'s edges. Windows whose histograms do not fit the edges are skipped; returns the
// profile (source FLEET, samples = requests of the windows merged, windows = their count).
v1::ReferenceProfile MergeWindows(const v1::ReferenceProfile& binning,
                                  std::span<const v1::TelemetryWindow> windows);

}  // namespace edgefleet::telemetry
