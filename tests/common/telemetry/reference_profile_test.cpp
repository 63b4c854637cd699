#include "common/telemetry/reference_profile.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "common/core/limits.h"
#include "common/telemetry/feature_histogram.h"
#include "common/telemetry/features.h"

namespace edgefleet::telemetry {
namespace {

v1::ModelVersion Model(std::vector<int64_t> input, std::vector<int64_t> output) {
  v1::ModelVersion m;
  auto* in = m.add_inputs();
  in->set_name("x");
  for (int64_t d : input) in->add_shape(d);
  auto* out = m.add_outputs();
  out->set_name("y");
  for (int64_t d : output) out->add_shape(d);
  return m;
}

TEST(DefaultProfile, EdgesAreSymmetricLogSpacedWithABinAroundZero) {
  const std::vector<double>& e = DefaultEdges();
  ASSERT_TRUE(FeatureHistogram::ValidEdges(e));
  EXPECT_LE(e.size(), FeatureHistogram::kMaxEdges);
  EXPECT_EQ(e.size(), 142u);
  EXPECT_EQ(e.front(), -1e4);
  EXPECT_EQ(e.back(), 1e4);
  for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(e[i], -e[e.size() - 1 - i]);
  // The bin around 0 is [-1e-3, 1e-3).
  FeatureHistogram h(e);
  h.Add(0.0);
  h.Add(-0.0005);
  EXPECT_EQ(h.bins()[e.size() / 2], 2u);
  // Each positive edge is at most 1.28x the one before it (ten per decade).
  for (size_t i = e.size() / 2 + 1; i < e.size(); ++i) EXPECT_LE(e[i] / e[i - 1], 1.281);
}

TEST(DefaultProfile, VectorInputsHaveOneFeaturePerElementAndScoresShareTheEdges) {
  v1::ReferenceProfile p = DefaultProfile(Model({-1, 4}, {-1, 1}));
  EXPECT_EQ(p.source(), v1::REFERENCE_SOURCE_DEFAULT);
  ASSERT_EQ(p.features_size(), 4);
  EXPECT_EQ(FeatureEdges(p, 2), DefaultEdges());
  EXPECT_EQ(OutputEdges(p), DefaultEdges());
  EXPECT_EQ(p.profile_sha256(), ProfileSha256(p));
  EXPECT_EQ(p.profile_sha256().size(), 32u);
  EXPECT_TRUE(ValidateProfile(p, 4).ok());
}

TEST(DefaultProfile, ImagesHaveOneFeaturePerChannelAndClassifiersOneBinPerClass) {
  v1::ReferenceProfile p = DefaultProfile(Model({1, 3, 8, 8}, {1, 5}));
  EXPECT_EQ(p.features_size(), 3);
  EXPECT_EQ(OutputEdges(p), (std::vector<double>{0.5, 1.5, 2.5, 3.5}));
}

TEST(DefaultProfile, OtherShapesHaveNoFeatures) {
  EXPECT_EQ(DefaultProfile(Model({1, 2, 3}, {1, 1})).features_size(), 0);  // rank 3
  EXPECT_EQ(DefaultProfile(Model({1, -1}, {1, 1})).features_size(), 0);    // open width
  EXPECT_EQ(DefaultProfile(Model({1, 65}, {1, 1})).features_size(), 0);    // over the limit
  EXPECT_EQ(FeatureCountOf(Model({64}, {1})), RequestLimits::kTelemetryFeatures);
}

TEST(DefaultProfile, SameMetadataSameDigestAndShapesDiffer) {
  EXPECT_EQ(DefaultProfile(Model({1, 4}, {1, 1})).profile_sha256(),
            DefaultProfile(Model({-1, 4}, {1, 1})).profile_sha256());
  EXPECT_NE(DefaultProfile(Model({1, 4}, {1, 1})).profile_sha256(),
            DefaultProfile(Model({1, 3}, {1, 1})).profile_sha256());
  EXPECT_NE(DefaultProfile(Model({1, 4}, {1, 3})).profile_sha256(),
            DefaultProfile(Model({1, 4}, {1, 1})).profile_sha256());
}

TEST(CanonicalEncoding, EveryFieldButTheDigestCounts) {
  v1::ReferenceProfile p = DefaultProfile(Model({1, 2}, {1, 1}));
  const std::string base = ProfileSha256(p);
  v1::ReferenceProfile q = p;
  q.set_profile_sha256("other");
  EXPECT_EQ(ProfileSha256(q), base);
  for (auto change : std::vector<std::function<void(v1::ReferenceProfile&)>>{
           [](auto& r) { r.set_samples(1); }, [](auto& r) { r.set_windows(1); },
           [](auto& r) { r.set_source(v1::REFERENCE_SOURCE_FLEET); },
           [](auto& r) { r.mutable_features(0)->set_edges(0, -20000); },
           [](auto& r) { r.mutable_features(1)->set_min(1); },
           [](auto& r) { r.mutable_outputs()->set_max(1); },
           [](auto& r) { r.mutable_outputs()->add_bins(0); }}) {
    v1::ReferenceProfile changed = p;
    change(changed);
    EXPECT_NE(ProfileSha256(changed), base);
  }
}

TEST(ComputeProfile, DecileEdgesReferenceBinsMinAndMax) {
  std::vector<double> rows;  // 1,000 rows of two features: i and -i
  for (int i = 0; i < 1000; ++i) {
    rows.push_back(i);
    rows.push_back(-i);
  }
  std::vector<double> outputs(1000, 1.0);
  auto p = ComputeProfile(rows, 2, outputs, 3);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(p->samples(), 1000u);
  ASSERT_EQ(p->features_size(), 2);
  EXPECT_EQ(FeatureEdges(*p, 0),
            (std::vector<double>{100, 200, 300, 400, 500, 600, 700, 800, 900}));
  for (uint64_t b : p->features(0).bins()) EXPECT_EQ(b, 100u);
  EXPECT_EQ(p->features(1).min(), -999);
  EXPECT_EQ(p->features(1).max(), 0);
  EXPECT_EQ(OutputEdges(*p), (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(p->outputs().bins(1), 1000u);
  EXPECT_EQ(p->profile_sha256(), ProfileSha256(*p));
  EXPECT_TRUE(ValidateProfile(*p, 2).ok());
}

TEST(ComputeProfile, AFewSamplesAreAllowedAndSaySo) {
  auto p = ComputeProfile(std::vector<double>{1, 2, 3}, 1, std::vector<double>{0.5}, 0);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->samples(), 3u);
  EXPECT_FALSE(ComputeProfile({}, 1, {}, 0).ok());
}

TEST(ValidateProfile, SaysWhatIsWrong) {
  auto good = ComputeProfile(std::vector<double>{1, 2, 3, 4}, 2, std::vector<double>{1, 2}, 0);
  ASSERT_TRUE(good.ok());
  const auto refused = [&](std::function<void(v1::ReferenceProfile&)> change, size_t features,
                           const std::string& says) {
    v1::ReferenceProfile p = *good;
    change(p);
    absl::Status s = ValidateProfile(p, features);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << says;
    EXPECT_NE(std::string(s.message()).find(says), std::string::npos) << s.message();
  };
  EXPECT_TRUE(ValidateProfile(*good, 2).ok());
  refused([](auto&) {}, 3, "the model has 3");
  refused([](auto& p) { p.mutable_features(0)->add_edges(-1); }, 2, "strictly increasing");
  refused([](auto& p) { p.mutable_features(0)->add_edges(NAN); }, 2, "strictly increasing");
  refused([](auto& p) { p.mutable_features(1)->add_bins(0); }, 2, "edges + 1");
  refused([](auto& p) { p.mutable_outputs()->set_bins(0, 99); }, 2, "more values than");
  refused([](auto& p) { p.set_samples(0); }, 2, "no samples");
  refused([](auto& p) { p.mutable_features(0)->set_min(NAN); }, 2, "min <= max");
  refused(
      [](auto& p) {
        for (int i = 0; i < 65; ++i) p.add_features();
      },
      67, "the limit is 64");
  refused(
      [](auto& p) {
        for (int i = 0; i < 256; ++i) p.mutable_outputs()->add_edges(1000 + i);
        p.mutable_outputs()->clear_bins();
        for (int i = 0; i < p.outputs().edges_size() + 1; ++i) p.mutable_outputs()->add_bins(0);
      },
      2, "the limit is 255");
}

TEST(MergeWindows, AddsTheBinsOfDefaultBinnedWindows) {
  const v1::ModelVersion model = Model({1, 2}, {1, 3});
  const v1::ReferenceProfile binning = DefaultProfile(model);
  std::vector<v1::TelemetryWindow> windows;
  for (int w = 0; w < 3; ++w) {
    v1::TelemetryWindow window;
    window.set_request_count(2);
    for (int f = 0; f < 2; ++f) {
      FeatureHistogram h(FeatureEdges(binning, static_cast<size_t>(f)));
      h.Add(f + w);
      h.Add(f + w + 0.5);
      auto* fw = window.add_features();
      fw->mutable_bins()->Assign(h.bins().begin(), h.bins().end());
      fw->set_min(*h.min());
      fw->set_max(*h.max());
      fw->set_sum(h.sum());
    }
    FeatureHistogram out(OutputEdges(binning));
    out.Add(2);
    out.Add(2);
    window.mutable_outputs()->mutable_bins()->Assign(out.bins().begin(), out.bins().end());
    window.mutable_outputs()->set_min(2);
    window.mutable_outputs()->set_max(2);
    window.mutable_outputs()->set_sum(4);
    windows.push_back(window);
  }
  windows.emplace_back();  // no features: skipped
  v1::ReferenceProfile fleet = MergeWindows(binning, windows);
  EXPECT_EQ(fleet.source(), v1::REFERENCE_SOURCE_FLEET);
  EXPECT_EQ(fleet.windows(), 3u);
  EXPECT_EQ(fleet.samples(), 6u);
  EXPECT_EQ(fleet.features(1).min(), 1);
  EXPECT_EQ(fleet.features(1).max(), 3.5);
  EXPECT_EQ(fleet.outputs().bins(2), 6u);
  EXPECT_TRUE(ValidateProfile(fleet, 2).ok()) << ValidateProfile(fleet, 2);
  // Windows binned by the default carry its digest, which the fleet profile's binning is.
  EXPECT_EQ(BinningOf(fleet).profile_sha256(), binning.profile_sha256());
  EXPECT_EQ(FeatureEdges(fleet, 0), DefaultEdges());
}

TEST(Features, VectorRowsAndImageChannelMeans) {
  std::vector<double> f;
  const std::vector<int64_t> rows{2, 3};
  EXPECT_EQ(ExtractFeatures(rows, std::vector<float>{1, 2, 3, 4, 5, 6}, f), 3u);
  EXPECT_EQ(f, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  const std::vector<int64_t> image{1, 2, 1, 2};
  EXPECT_EQ(ExtractFeatures(image, std::vector<float>{1, 3, 10, 20}, f), 2u);
  EXPECT_EQ(f, (std::vector<double>{2, 15}));
  const std::vector<int64_t> odd{1, 2, 2};
  EXPECT_EQ(ExtractFeatures(odd, std::vector<float>{1, 2, 3, 4}, f), 0u);
  std::vector<double> out;
  ExtractOutputs(rows, std::vector<float>{0.1f, 0.7f, 0.2f, 0.9f, 0.0f, 0.1f}, out);
  EXPECT_EQ(out, (std::vector<double>{1, 0}));
}

}  // namespace
}  // namespace edgefleet::telemetry
