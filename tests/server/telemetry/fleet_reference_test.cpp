// Reference profiles on PostgreSQL: an uploaded one stored once with its version, and the fleet
// fallback — a version without one gets a FLEET profile from its first K default-binned windows
// with requests, made once (a second pass, a restarted server or another replica makes none).
#include "server/telemetry/fleet_reference.h"

#include <gtest/gtest.h>

#include "common/telemetry/feature_histogram.h"
#include "common/telemetry/reference_profile.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "server/store/reference_repo.h"
#include "server/store/telemetry_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server::telemetry {
namespace {

namespace t = edgefleet::telemetry;

constexpr int64_t kNow = 1'800'000'000;

class ReferenceStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    devices_ = std::make_unique<DeviceRepo>(*db_);
    models_ = std::make_unique<ModelRepo>(*db_);
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) { return devices_->Enroll(tx, "cam-1", {}, {}, "01", kNow); })
            .ok());
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return telemetry_.EnsurePartitions(tx, kNow - 86400, kNow + 86400);
                              })
                    .ok());
    model_.set_model_name("classifier");
    model_.set_version("1");
    model_.set_format(v1::MODEL_FORMAT_ONNX);
    model_.set_artifact_sha256(Digest('a'));
    model_.set_size_bytes(10);
    auto* in = model_.add_inputs();
    in->set_name("x");
    in->add_shape(1);
    in->add_shape(2);
    auto* out = model_.add_outputs();
    out->set_name("y");
    out->add_shape(1);
    out->add_shape(3);
    auto next = db_->Transact("test", [&](Tx& tx) { return models_->NextMetadataVersion(tx); });
    ASSERT_TRUE(next.ok());
    model_.set_metadata_version(*next);
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) { return models_->InsertVersion(tx, model_, "", "", ""); })
            .ok());
  }

  // A window of cam-1 binned by `binning`, with `requests` requests of feature values v and
  // v + 1 and class 2.
  v1::TelemetryWindow Window(uint64_t sequence, uint64_t requests, double v,
                             const v1::ReferenceProfile& binning) {
    v1::TelemetryWindow w;
    w.set_sequence(sequence);
    w.set_model_name("classifier");
    w.set_version("1");
    w.mutable_window_start()->set_seconds(kNow - 600 + static_cast<int64_t>(sequence) * 60);
    w.mutable_window_end()->set_seconds(kNow - 540 + static_cast<int64_t>(sequence) * 60);
    w.set_request_count(requests);
    const auto fill = [&](v1::FeatureWindow* fw, std::vector<double> edges, double value) {
      t::FeatureHistogram h(std::move(edges));
      for (uint64_t r = 0; r < requests; ++r) h.Add(value);
      fw->mutable_bins()->Assign(h.bins().begin(), h.bins().end());
      if (requests > 0) {
        fw->set_min(value);
        fw->set_max(value);
        fw->set_sum(h.sum());
      }
    };
    for (size_t f = 0; f < 2; ++f) fill(w.add_features(), t::FeatureEdges(binning, f), v + f);
    fill(w.mutable_outputs(), t::OutputEdges(binning), 2);
    w.set_profile_sha256(binning.profile_sha256());
    return w;
  }

  void Store(const v1::TelemetryWindow& w) {
    auto stored = db_->Transact(
        "test", [&](Tx& tx) { return telemetry_.InsertWindow(tx, "cam-1", 7, w, "", kNow); });
    ASSERT_TRUE(stored.ok()) << stored.status();
  }

  std::optional<v1::ReferenceProfile> Stored() {
    auto got =
        db_->Transact("test", [&](Tx& tx) { return references_.Get(tx, "classifier", "1"); });
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : std::nullopt;
  }

  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  TelemetryRepo telemetry_;
  ReferenceRepo references_;
  v1::ModelVersion model_;
};

TEST_F(ReferenceStoreTest, AnUploadedProfileIsStoredOnceAndSummarised) {
  auto profile =
      t::ComputeProfile(std::vector<double>{1, 2, 3, 4}, 2, std::vector<double>{1, 2}, 3);
  ASSERT_TRUE(profile.ok());
  EXPECT_FALSE(Stored().has_value());
  auto inserted = db_->Transact(
      "test", [&](Tx& tx) { return references_.Insert(tx, "classifier", "1", *profile); });
  ASSERT_TRUE(inserted.ok() && *inserted) << inserted.status();
  auto again = db_->Transact(
      "test", [&](Tx& tx) { return references_.Insert(tx, "classifier", "1", *profile); });
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again) << "a profile is made once";
  ASSERT_TRUE(Stored().has_value());
  EXPECT_EQ(Stored()->SerializeAsString(), profile->SerializeAsString());
  auto summaries =
      db_->Transact("test", [&](Tx& tx) { return references_.Summaries(tx, "classifier"); });
  ASSERT_TRUE(summaries.ok());
  ASSERT_EQ(summaries->count("1"), 1u);
  EXPECT_EQ(summaries->at("1").source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(summaries->at("1").samples(), 2u);
  EXPECT_EQ(summaries->at("1").feature_count(), 2u);
  EXPECT_EQ(summaries->at("1").profile_sha256(), profile->profile_sha256());
  // No version, no profile: the foreign key refuses it.
  EXPECT_FALSE(
      db_->Transact("test",
                    [&](Tx& tx) { return references_.Insert(tx, "classifier", "9", *profile); })
          .ok());
}

TEST_F(ReferenceStoreTest, TheFirstKDefaultBinnedWindowsBecomeAFleetProfileOnce) {
  const v1::ReferenceProfile binning = t::DefaultProfile(model_);
  Store(Window(1, 0, 0, binning));  // no requests: not counted
  Store(Window(2, 4, 0.5, binning));
  v1::ReferenceProfile other = binning;
  other.set_profile_sha256(std::string(32, 'z'));
  Store(Window(3, 4, 9, other));  // binned otherwise: passed over
  FleetReferences fleet(*db_, references_, 3);
  auto made = fleet.MakeDue();
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(*made, 0);
  auto pending = db_->Transact(
      "test", [&](Tx& tx) { return references_.CountWindows(tx, "classifier", "1", 3); });
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(*pending, 2u);

  Store(Window(4, 6, 1.5, binning));
  Store(Window(5, 10, 3, binning));
  Store(Window(6, 100, 50, binning));  // the fourth: beyond K
  made = fleet.MakeDue();
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(*made, 1);
  auto profile = Stored();
  ASSERT_TRUE(profile.has_value());
  EXPECT_EQ(profile->source(), v1::REFERENCE_SOURCE_FLEET);
  EXPECT_EQ(profile->windows(), 3u);
  EXPECT_EQ(profile->samples(), 20u);
  EXPECT_EQ(profile->features(0).min(), 0.5);
  EXPECT_EQ(profile->features(0).max(), 3);
  EXPECT_EQ(profile->outputs().bins(2), 20u);
  EXPECT_EQ(profile->profile_sha256(), t::ProfileSha256(*profile));
  EXPECT_TRUE(t::ValidateProfile(*profile, 2).ok());
  EXPECT_EQ(t::BinningOf(*profile).profile_sha256(), binning.profile_sha256());

  // Made once: neither another pass nor a restarted server (a new maker) makes it again.
  Store(Window(7, 100, 50, binning));
  EXPECT_EQ(*fleet.MakeDue(), 0);
  FleetReferences restarted(*db_, references_, 3);
  EXPECT_EQ(*restarted.MakeDue(), 0);
  EXPECT_EQ(Stored()->SerializeAsString(), profile->SerializeAsString());
}

TEST_F(ReferenceStoreTest, OneReplicaAtATimeHoldsTheFleetClaim) {
  auto other = Database::Open({.url = pg_.url()});
  ASSERT_TRUE(other.ok());
  auto outcome = db_->Transact("test", [&](Tx& tx) -> absl::StatusOr<bool> {
    auto mine = references_.ClaimFleetWork(tx);
    if (!mine.ok() || !*mine) return absl::InternalError("first claim failed");
    return (*other)->Transact("test", [&](Tx& tx2) { return references_.ClaimFleetWork(tx2); });
  });
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_FALSE(*outcome);
  // Released with the transaction.
  auto later = (*other)->Transact("test", [&](Tx& tx) { return references_.ClaimFleetWork(tx); });
  ASSERT_TRUE(later.ok());
  EXPECT_TRUE(*later);
}

}  // namespace
}  // namespace edgefleet::server::telemetry
