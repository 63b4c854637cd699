// Differential updates on the agent: a device holding v1 rebuilds v2 from an offered patch, and
// any problem with the patch (damaged, truncated, padded, made for another base, offered for a
// version the device does not hold) falls back to the full artifact, which then serves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <random>

#include "agent/engine/opencv_engine.h"
#include "agent/update/updater.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta.h"
#include "tests/fakes/fake_device_transport.h"
#include "tests/fakes/scratch_dir.h"
#include "tests/fakes/test_release.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;
using fakes::FakeDeviceTransport;
using Behavior = fakes::FakeDeviceTransport::Behavior;
using fakes::ReadFileBytes;
using fakes::ReleaseSpec;
using fakes::TestDataPath;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kModel[] = "classifier";
constexpr float kTolerance = 1e-4f;

// A patch from `old_data` to `new_data`; empty (failing the caller's size check) on error.
std::string MakePatch(const std::string& old_data, const std::string& new_data,
                      delta::Codec codec) {
  delta::StringSink sink;
  auto result = delta::Diff(old_data, new_data, codec, sink);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? sink.data() : std::string();
}

// One agent over a temp state directory (real SQLite state, OpenCV engines, Ed25519
// verification) that already serves classifier v1, and an in-memory server offering v2.
class UpdaterPatchTest : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto key = fakes::ReleaseKey::Generate();
    ASSERT_TRUE(key.ok()) << key.status();
    key_.emplace(*key);
    v1_ = ReadFileBytes(TestDataPath("classifier_v1.onnx"));
    v2_ = ReadFileBytes(TestDataPath("classifier_v2.onnx"));
    ASSERT_FALSE(v1_.empty() || v2_.empty()) << "run edgefleet_test_models";
    expected_ = fakes::LoadExpected();
    ASSERT_EQ(expected_.count("classifier_v2.onnx"), 1u);
    engines_ = MakeOpenCvEngineFactory();
    auto state = StateStore::Open((dir_.path() / "state.db").string());
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *std::move(state);
    // Probation is decided at the swap (no window): these tests are about the bytes.
    ProbationPolicy probation;
    probation.window = std::chrono::seconds(0);
    updater_ = std::make_unique<Updater>(*state_, host_, *engines_, transport_, key_->verifier(),
                                         clock_, dir_.path().string(), RetryPolicy{}, probation);

    ASSERT_TRUE(updater_->Apply(Release("1.0", v1_, 1)).ok());
    ExpectServes("1.0", "classifier_v1.onnx");
    fetches_before_ = transport_.Fetches().size();
    events_before_ = transport_.ReportedEvents().size();
  }

  v1::DesiredModel Release(const std::string& version, const std::string& artifact,
                           uint64_t metadata_version) {
    ReleaseSpec spec;
    spec.model_name = kModel;
    spec.version = version;
    spec.artifact = artifact;
    spec.metadata_version = metadata_version;
    spec.expires_at = clock_.Now() + std::chrono::hours(24);
    transport_.AddArtifact(artifact);
    auto desired = fakes::MakeDesired(spec, key_->signer());
    EXPECT_TRUE(desired.ok()) << desired.status();
    return desired.ok() ? *desired : v1::DesiredModel();
  }

  // v2, offered with `patch` (served under its own digest) against `from` (default: v1).
  v1::DesiredModel V2WithPatch(const std::string& patch, delta::Codec codec,
                               std::optional<std::string> from = std::nullopt) {
    v1::DesiredModel desired = Release("2.0", v2_, 2);
    patch_sha_ = transport_.AddArtifact(patch);
    v1::PatchOffer* offer = desired.mutable_patch();
    offer->set_from_artifact_sha256(from.value_or(crypto::Sha256Bytes(v1_)));
    offer->set_patch_sha256(patch_sha_);
    offer->set_patch_size_bytes(patch.size());
    offer->set_codec(std::string(delta::CodecName(codec)));
    return desired;
  }

  std::string GoodPatch() {
    std::string patch = MakePatch(v1_, v2_, delta::Codec::kTensor);
    // The offer is only made (and only taken) when the patch beats the full artifact.
    EXPECT_GT(patch.size(), 0u);
    EXPECT_LT(patch.size(), v2_.size());
    return patch;
  }

  void ExpectServes(const std::string& version, const std::string& file) {
    const fakes::ExpectedCase& expected = expected_[file];
    auto prediction = host_.Predict(kModel, expected.inputs, {});
    ASSERT_TRUE(prediction.ok()) << prediction.status();
    EXPECT_EQ(prediction->version, version);
    ASSERT_EQ(prediction->outputs.size(), 1u);
    const std::vector<float>& want = expected.outputs.at(0).data;
    const std::vector<float>& got = prediction->outputs[0].data;
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], kTolerance) << "version " << version << " element " << i;
    }
  }

  // Digests fetched since v1 was installed, in order.
  std::vector<std::string> NewFetches() {
    std::vector<std::string> out;
    auto all = transport_.Fetches();
    for (size_t i = fetches_before_; i < all.size(); ++i) out.push_back(all[i].sha256);
    return out;
  }

  std::vector<v1::UpdateEvent> NewEvents() {
    auto all = transport_.ReportedEvents();
    return std::vector<v1::UpdateEvent>(all.begin() + static_cast<long>(events_before_), all.end());
  }
  std::vector<v1::UpdateEventKind> NewKinds() {
    std::vector<v1::UpdateEventKind> kinds;
    for (const auto& e : NewEvents()) kinds.push_back(e.kind());
    return kinds;
  }

  // Whatever is left in <state>/downloads.
  std::vector<std::string> Downloads() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_.path() / "downloads", ec)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // v2 serves from the signed bytes, reached through the full artifact after the patch was
  // rejected (reported with reason PATCH before the full download started).
  void ExpectFellBackToFull() {
    ExpectServes("2.0", "classifier_v2.onnx");
    auto current = state_->Current(kModel);
    ASSERT_TRUE(current.ok() && *current);
    EXPECT_EQ(crypto::Sha256Bytes(ReadFileBytes((*current)->path)), crypto::Sha256Bytes(v2_));
    EXPECT_THAT(NewFetches(), ElementsAre(patch_sha_, crypto::Sha256Bytes(v2_)));
    EXPECT_THAT(
        NewKinds(),
        ElementsAre(v1::UPDATE_EVENT_KIND_PATCH_REJECTED, v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED,
                    v1::UPDATE_EVENT_KIND_DOWNLOADED, v1::UPDATE_EVENT_KIND_VERIFIED,
                    v1::UPDATE_EVENT_KIND_PROBATION_STARTED, v1::UPDATE_EVENT_KIND_ACTIVATED));
    auto events = NewEvents();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events[0].reason(), v1::FAILURE_REASON_PATCH);
    EXPECT_EQ(events[0].version(), "2.0");
    EXPECT_FALSE(events[0].detail().empty()) << "the rejection says why";
    EXPECT_THAT(Downloads(), IsEmpty()) << "no patch, partial or temporary file is left behind";
  }

  fakes::ScratchDir dir_{"updater_patch_test"};
  FakeClock clock_;
  FakeDeviceTransport transport_;
  std::optional<fakes::ReleaseKey> key_;
  std::string v1_, v2_;
  std::map<std::string, fakes::ExpectedCase> expected_;
  std::unique_ptr<EngineFactory> engines_;
  std::unique_ptr<StateStore> state_;
  ModelHost host_;
  std::unique_ptr<Updater> updater_;
  size_t fetches_before_ = 0;
  size_t events_before_ = 0;
  std::string patch_sha_;
};

TEST_F(UpdaterPatchTest, HeldVersionIsPatchedIntoTheNextWithoutTheFullDownload) {
  ASSERT_TRUE(updater_->Apply(V2WithPatch(GoodPatch(), delta::Codec::kTensor)).ok());

  ExpectServes("2.0", "classifier_v2.onnx");
  EXPECT_THAT(NewFetches(), ElementsAre(patch_sha_)) << "only the patch crossed the network";
  EXPECT_THAT(
      NewKinds(),
      ElementsAre(v1::UPDATE_EVENT_KIND_DOWNLOADED, v1::UPDATE_EVENT_KIND_VERIFIED,
                  v1::UPDATE_EVENT_KIND_PROBATION_STARTED, v1::UPDATE_EVENT_KIND_ACTIVATED));
  auto current = state_->Current(kModel);
  ASSERT_TRUE(current.ok() && *current);
  EXPECT_EQ((*current)->version, "2.0");
  EXPECT_EQ((*current)->artifact_sha256, crypto::Sha256Bytes(v2_));
  EXPECT_EQ(crypto::Sha256Bytes(ReadFileBytes((*current)->path)), crypto::Sha256Bytes(v2_));
  // The held version was only read: it stays intact for rollback.
  auto previous = state_->Previous(kModel);
  ASSERT_TRUE(previous.ok() && *previous);
  EXPECT_EQ(crypto::Sha256Bytes(ReadFileBytes((*previous)->path)), crypto::Sha256Bytes(v1_));
  EXPECT_THAT(Downloads(), IsEmpty());
}

TEST_F(UpdaterPatchTest, MatchZstdPatchAlsoApplies) {
  std::string patch = MakePatch(v1_, v2_, delta::Codec::kMatchZstd);
  ASSERT_LT(patch.size(), v2_.size());
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kMatchZstd)).ok());
  ExpectServes("2.0", "classifier_v2.onnx");
  EXPECT_THAT(NewFetches(), ElementsAre(patch_sha_));
  EXPECT_THAT(Downloads(), IsEmpty());
}

// --- the server misbehaves with the patch: each is rejected and the full artifact serves ---

TEST_F(UpdaterPatchTest, PatchCorruptedInTransitFallsBackToFull) {
  std::string patch = GoodPatch();
  v1::DesiredModel desired = V2WithPatch(patch, delta::Codec::kTensor);
  transport_.SetBehavior(patch_sha_, Behavior::CorruptByte(patch.size() / 2));
  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectFellBackToFull();
}

// The server stored a damaged patch and advertises the damaged bytes' own digest, so the
// download verifies: the decoder and the final digest check must catch it.
TEST_F(UpdaterPatchTest, PatchDamagedInsideThePayloadAtTheSourceFallsBackToFull) {
  std::string patch = GoodPatch();
  patch[patch.size() / 2] = static_cast<char>(patch[patch.size() / 2] ^ 0x5A);
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kTensor)).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, PatchDamagedInItsLastByteAtTheSourceFallsBackToFull) {
  std::string patch = GoodPatch();
  patch.back() = static_cast<char>(patch.back() ^ 0x01);
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kTensor)).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, TruncatedPatchFallsBackToFull) {
  std::string patch = GoodPatch();
  v1::DesiredModel desired = V2WithPatch(patch, delta::Codec::kTensor);
  transport_.SetBehavior(patch_sha_, Behavior::TruncateTo(patch.size() - 7));
  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, OversizePatchFallsBackToFull) {
  std::string patch = GoodPatch();
  v1::DesiredModel desired = V2WithPatch(patch, delta::Codec::kTensor);
  transport_.SetBehavior(patch_sha_, Behavior::AppendBytes(std::string(64, 'x')));
  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, PatchMadeForAnotherBaseFallsBackToFull) {
  // A container patch names its base: one made for a device holding v2 does not apply to v1.
  ASSERT_TRUE(
      updater_
          ->Apply(V2WithPatch(MakePatch(v2_, v2_, delta::Codec::kTensor), delta::Codec::kTensor))
          .ok());
  ExpectFellBackToFull();
}

// The device holds v1, but the patch was made from a slightly different build of it.
std::string OtherBuildOf(const std::string& bytes) {
  std::string other = bytes;
  std::mt19937 rng(7);
  for (int i = 0; i < 8; ++i) {
    size_t at = rng() % other.size();
    other[at] = static_cast<char>(other[at] ^ 0x10);
  }
  return other;
}

TEST_F(UpdaterPatchTest, TensorPatchFromAnotherBuildOfTheBaseFallsBackToFull) {
  std::string patch = MakePatch(OtherBuildOf(v1_), v2_, delta::Codec::kTensor);
  ASSERT_LT(patch.size(), v2_.size());
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kTensor)).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, BsdiffPatchFromAnotherBuildOfTheBaseFallsBackToFull) {
  // bsdiff40 carries no digests: a patch made against other bytes applies cleanly to v1, and
  // only the check of the result against the signed SHA-256 notices that it is not v2.
  std::string patch = MakePatch(OtherBuildOf(v1_), v1_, delta::Codec::kBsdiff40);
  ASSERT_LT(patch.size(), v2_.size());
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kBsdiff40)).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, PatchThatRebuildsOtherBytesFallsBackToFull) {
  // A well-formed bsdiff40 patch from v1 whose output (v1 itself, same length as v2) is not the
  // signed artifact.
  std::string patch = MakePatch(v1_, v1_, delta::Codec::kBsdiff40);
  ASSERT_LT(patch.size(), v2_.size());
  ASSERT_TRUE(updater_->Apply(V2WithPatch(patch, delta::Codec::kBsdiff40)).ok());
  ExpectFellBackToFull();
  auto events = NewEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_THAT(events[0].detail(), ::testing::HasSubstr("SHA-256"));
}

TEST_F(UpdaterPatchTest, PatchForAVersionTheDeviceDoesNotHoldIsNotFetched) {
  ASSERT_TRUE(updater_
                  ->Apply(V2WithPatch(GoodPatch(), delta::Codec::kTensor,
                                      crypto::Sha256Bytes("some other model")))
                  .ok());
  ExpectServes("2.0", "classifier_v2.onnx");
  EXPECT_THAT(NewFetches(), ElementsAre(crypto::Sha256Bytes(v2_)));
  EXPECT_THAT(NewKinds(),
              ElementsAre(v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED, v1::UPDATE_EVENT_KIND_DOWNLOADED,
                          v1::UPDATE_EVENT_KIND_VERIFIED, v1::UPDATE_EVENT_KIND_PROBATION_STARTED,
                          v1::UPDATE_EVENT_KIND_ACTIVATED));
  EXPECT_THAT(Downloads(), IsEmpty());
}

TEST_F(UpdaterPatchTest, PatchOfferNotSmallerThanTheArtifactIsNotFetched) {
  v1::DesiredModel desired = V2WithPatch(GoodPatch(), delta::Codec::kTensor);
  desired.mutable_patch()->set_patch_size_bytes(v2_.size());
  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectServes("2.0", "classifier_v2.onnx");
  EXPECT_THAT(NewFetches(), ElementsAre(crypto::Sha256Bytes(v2_)));
  EXPECT_THAT(Downloads(), IsEmpty());
}

TEST_F(UpdaterPatchTest, InterruptedPatchDownloadFallsBackAndLeavesNothingBehind) {
  std::string patch = GoodPatch();
  v1::DesiredModel desired = V2WithPatch(patch, delta::Codec::kTensor);
  transport_.SetBehavior(patch_sha_, Behavior::FailAfterBytes(patch.size() / 2));
  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectFellBackToFull();
}

TEST_F(UpdaterPatchTest, FullDownloadAfterARejectedPatchResumesAndNeverRetriesThePatch) {
  std::string patch = GoodPatch();
  v1::DesiredModel desired = V2WithPatch(patch, delta::Codec::kTensor);
  transport_.SetBehavior(patch_sha_, Behavior::CorruptByte(3));
  transport_.SetBehavior(crypto::Sha256Bytes(v2_), Behavior::FailAfterBytes(400));

  absl::Status first = updater_->Apply(desired);
  EXPECT_FALSE(first.ok());
  ExpectServes("1.0", "classifier_v1.onnx");
  // Only what the full download needs to resume is kept.
  EXPECT_THAT(Downloads(), ElementsAre(crypto::ToHex(crypto::Sha256Bytes(v2_)) + ".part"));

  ASSERT_TRUE(updater_->Apply(desired).ok());
  ExpectServes("2.0", "classifier_v2.onnx");
  auto fetches = transport_.Fetches();
  ASSERT_EQ(fetches.size(), fetches_before_ + 3);
  EXPECT_EQ(fetches[fetches_before_].sha256, patch_sha_);
  EXPECT_EQ(fetches[fetches_before_ + 1].sha256, crypto::Sha256Bytes(v2_));
  EXPECT_EQ(fetches[fetches_before_ + 2].sha256, crypto::Sha256Bytes(v2_));
  EXPECT_EQ(fetches[fetches_before_ + 2].offset, 400u) << "the full download resumed";
  EXPECT_THAT(Downloads(), IsEmpty());
}

}  // namespace
}  // namespace edgefleet::agent
