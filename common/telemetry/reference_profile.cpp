#include "common/telemetry/reference_profile.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/core/limits.h"
#include "common/crypto/sha256.h"
#include "common/telemetry/feature_histogram.h"

namespace edgefleet::telemetry {
namespace {

constexpr std::string_view kMagic = "EFRP1";

void PutU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutDouble(std::string& out, double v) { PutU64(out, std::bit_cast<uint64_t>(v)); }

void PutHistogram(std::string& out, const v1::FeatureReference& f) {
  PutU64(out, static_cast<uint64_t>(f.edges_size()));
  for (double e : f.edges()) PutDouble(out, e);
  PutU64(out, static_cast<uint64_t>(f.bins_size()));
  for (uint64_t b : f.bins()) PutU64(out, b);
  PutDouble(out, f.min());
  PutDouble(out, f.max());
}

void SetEdges(v1::FeatureReference& f, const std::vector<double>& edges) {
  f.mutable_edges()->Assign(edges.begin(), edges.end());
}

// The reference histogram of `values` over `edges`, with min and max.
v1::FeatureReference Histogram(std::vector<double> edges, std::span<const double> values) {
  FeatureHistogram h(std::move(edges));
  for (double v : values) h.Add(v);
  v1::FeatureReference f;
  SetEdges(f, h.edges());
  f.mutable_bins()->Assign(h.bins().begin(), h.bins().end());
  if (h.min()) f.set_min(*h.min());
  if (h.max()) f.set_max(*h.max());
  return f;
}

absl::Status CheckHistogram(const std::string& what, const v1::FeatureReference& f, bool needs_bins,
                            uint64_t samples) {
  const std::vector<double> edges(f.edges().begin(), f.edges().end());
  if (edges.size() > FeatureHistogram::kMaxEdges) {
    return absl::InvalidArgumentError(absl::StrCat("reference profile: ", what, " has ",
                                                   edges.size(), " edges; the limit is ",
                                                   FeatureHistogram::kMaxEdges));
  }
  if (!FeatureHistogram::ValidEdges(edges)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference profile: ", what, " has edges that are not finite and strictly increasing"));
  }
  if (!needs_bins && f.bins().empty()) return absl::OkStatus();
  if (static_cast<size_t>(f.bins_size()) != edges.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("reference profile: ", what, " has ",
                                                   f.bins_size(), " bins for ", edges.size(),
                                                   " edges (it needs edges + 1)"));
  }
  uint64_t total = 0;
  for (uint64_t b : f.bins()) {
    if (b > samples - total) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reference profile: ", what, "'s bins hold more values than its ", samples, " samples"));
    }
    total += b;
  }
  if (total > 0 && !(std::isfinite(f.min()) && std::isfinite(f.max()) && f.min() <= f.max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference profile: ", what, " needs a finite min <= max"));
  }
  return absl::OkStatus();
}

}  // namespace

size_t FeatureCountOf(const v1::ModelVersion& metadata) {
  if (metadata.inputs().empty()) return 0;
  const auto& shape = metadata.inputs(0).shape();
  int64_t count = 0;
  if (shape.size() == 1 || shape.size() == 2) {
    count = shape[shape.size() - 1];
  } else if (shape.size() == 4) {
    count = shape[1];
  }
  if (count <= 0 || static_cast<size_t>(count) > RequestLimits::kTelemetryFeatures) return 0;
  return static_cast<size_t>(count);
}

size_t ClassCountOf(const v1::ModelVersion& metadata) {
  if (metadata.outputs().empty() || metadata.outputs(0).shape().empty()) return 0;
  const int64_t classes = metadata.outputs(0).shape(metadata.outputs(0).shape_size() - 1);
  if (classes < 2 || static_cast<size_t>(classes) > RequestLimits::kTelemetryBins) return 0;
  return static_cast<size_t>(classes);
}

const std::vector<double>& DefaultEdges() {
  static const std::vector<double>* kEdges = [] {
    // Renard R10: ten steps per decade, each about 1.26x the last.
    constexpr double kMantissas[] = {1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0};
    constexpr double kDecades[] = {1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3};
    std::vector<double> positive;
    for (double decade : kDecades) {
      for (double m : kMantissas) positive.push_back(m * decade);
    }
    positive.push_back(1e4);
    auto* edges = new std::vector<double>;
    for (auto it = positive.rbegin(); it != positive.rend(); ++it) edges->push_back(-*it);
    edges->insert(edges->end(), positive.begin(), positive.end());
    return edges;
  }();
  return *kEdges;
}

std::vector<double> ClassEdges(size_t classes) {
  std::vector<double> edges;
  for (size_t c = 1; c < classes; ++c) edges.push_back(static_cast<double>(c) - 0.5);
  return edges;
}

v1::ReferenceProfile DefaultProfile(const v1::ModelVersion& metadata) {
  v1::ReferenceProfile p;
  p.set_source(v1::REFERENCE_SOURCE_DEFAULT);
  const size_t features = FeatureCountOf(metadata);
  for (size_t i = 0; i < features; ++i) SetEdges(*p.add_features(), DefaultEdges());
  const size_t classes = ClassCountOf(metadata);
  SetEdges(*p.mutable_outputs(), classes > 0 ? ClassEdges(classes) : DefaultEdges());
  p.set_profile_sha256(ProfileSha256(p));
  return p;
}

std::string CanonicalEncoding(const v1::ReferenceProfile& profile) {
  std::string out(kMagic);
  PutU64(out, static_cast<uint64_t>(profile.source()));
  PutU64(out, profile.samples());
  PutU64(out, profile.windows());
  PutU64(out, static_cast<uint64_t>(profile.features_size()));
  for (const auto& f : profile.features()) PutHistogram(out, f);
  PutHistogram(out, profile.outputs());
  return out;
}

std::string ProfileSha256(const v1::ReferenceProfile& profile) {
  return crypto::Sha256Bytes(CanonicalEncoding(profile));
}

v1::ReferenceProfile BinningOf(const v1::ReferenceProfile& profile) {
  if (profile.source() == v1::REFERENCE_SOURCE_UPLOADED ||
      profile.source() == v1::REFERENCE_SOURCE_DEFAULT) {
    return profile;
  }
  v1::ReferenceProfile b;
  b.set_source(v1::REFERENCE_SOURCE_DEFAULT);
  for (const auto& f : profile.features()) *b.add_features()->mutable_edges() = f.edges();
  *b.mutable_outputs()->mutable_edges() = profile.outputs().edges();
  b.set_profile_sha256(ProfileSha256(b));
  return b;
}

std::vector<double> FeatureEdges(const v1::ReferenceProfile& profile, size_t i) {
  if (i >= static_cast<size_t>(profile.features_size())) return {};
  const auto& e = profile.features(static_cast<int>(i)).edges();
  return {e.begin(), e.end()};
}

std::vector<double> OutputEdges(const v1::ReferenceProfile& profile) {
  return {profile.outputs().edges().begin(), profile.outputs().edges().end()};
}

absl::Status ValidateProfile(const v1::ReferenceProfile& profile, size_t feature_count) {
  const auto features = static_cast<size_t>(profile.features_size());
  if (features > RequestLimits::kTelemetryFeatures) {
    return absl::InvalidArgumentError(absl::StrCat("reference profile: ", features,
                                                   " features; the limit is ",
                                                   RequestLimits::kTelemetryFeatures));
  }
  if (features != feature_count) {
    return absl::InvalidArgumentError(absl::StrCat("reference profile: ", features,
                                                   " features, but the model has ", feature_count,
                                                   " (from its first input's shape)"));
  }
  const bool needs_bins = profile.source() != v1::REFERENCE_SOURCE_DEFAULT;
  if (needs_bins && profile.samples() == 0) {
    return absl::InvalidArgumentError("reference profile: no samples");
  }
  for (size_t i = 0; i < features; ++i) {
    if (auto s = CheckHistogram(absl::StrCat("feature ", i), profile.features(static_cast<int>(i)),
                                needs_bins, profile.samples());
        !s.ok()) {
      return s;
    }
  }
  return CheckHistogram("the outputs", profile.outputs(), needs_bins, profile.samples());
}

absl::StatusOr<v1::ReferenceProfile> ComputeProfile(std::span<const double> features,
                                                    size_t feature_count,
                                                    std::span<const double> outputs,
                                                    size_t classes) {
  const size_t rows = feature_count == 0 ? outputs.size() : features.size() / feature_count;
  if (rows == 0 || (feature_count > 0 && features.size() % feature_count != 0)) {
    return absl::InvalidArgumentError("the reference sample holds no complete row");
  }
  v1::ReferenceProfile p;
  p.set_source(v1::REFERENCE_SOURCE_UPLOADED);
  // A model may answer several values per sample (ExtractOutputs): samples bound every histogram.
  p.set_samples(std::max<uint64_t>(rows, outputs.size()));
  std::vector<double> column(rows);
  for (size_t i = 0; i < feature_count; ++i) {
    for (size_t r = 0; r < rows; ++r) column[r] = features[r * feature_count + i];
    *p.add_features() = Histogram(DecileEdges(column), column);
  }
  *p.mutable_outputs() =
      Histogram(classes > 0 ? ClassEdges(classes) : DecileEdges(outputs), outputs);
  p.set_profile_sha256(ProfileSha256(p));
  return p;
}

v1::ReferenceProfile MergeWindows(const v1::ReferenceProfile& binning,
                                  std::span<const v1::TelemetryWindow> windows) {
  const auto edges_of = [](const v1::FeatureReference& f) {
    return std::vector<double>(f.edges().begin(), f.edges().end());
  };
  std::vector<FeatureHistogram> features;
  for (const auto& f : binning.features()) features.emplace_back(edges_of(f));
  FeatureHistogram outputs(edges_of(binning.outputs()));
  uint64_t merged = 0;
  uint64_t samples = 0;
  for (const v1::TelemetryWindow& w : windows) {
    if (w.features_size() != binning.features_size()) continue;
    std::vector<FeatureHistogram> parts;
    bool fits = true;
    const auto add = [&](const v1::FeatureWindow& fw, const std::vector<double>& edges) {
      auto h = FeatureHistogram::FromParts(edges, {fw.bins().begin(), fw.bins().end()},
                                           fw.nan_count(), fw.min(), fw.max(), fw.sum());
      if (!h) {
        fits = false;
        return;
      }
      parts.push_back(*std::move(h));
    };
    for (int i = 0; fits && i < w.features_size(); ++i) add(w.features(i), features[i].edges());
    if (fits) add(w.outputs(), outputs.edges());
    if (!fits) continue;
    for (size_t i = 0; i < features.size(); ++i) features[i].Merge(parts[i]);
    outputs.Merge(parts.back());
    ++merged;
  }
  v1::ReferenceProfile p;
  p.set_source(v1::REFERENCE_SOURCE_FLEET);
  const auto to_reference = [&samples](const FeatureHistogram& h) {
    v1::FeatureReference f;
    f.mutable_edges()->Assign(h.edges().begin(), h.edges().end());
    f.mutable_bins()->Assign(h.bins().begin(), h.bins().end());
    if (h.min()) f.set_min(*h.min());
    if (h.max()) f.set_max(*h.max());
    samples = std::max(samples, h.count());
    return f;
  };
  for (const auto& h : features) *p.add_features() = to_reference(h);
  *p.mutable_outputs() = to_reference(outputs);
  // The most values any one histogram holds: a request of N rows adds N to each feature.
  p.set_samples(samples);
  p.set_windows(merged);
  p.set_profile_sha256(ProfileSha256(p));
  return p;
}

}  // namespace edgefleet::telemetry
