// Field data capture on the device: the triggers (random at its rate, low confidence, a feature
// out of its reference range), the daily byte cap (stops capture, opens again the next day, holds
// across a restart) and the upload window and idleness (nothing leaves outside them).
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <random>

#include "agent/capture/capture_policy.h"
#include "agent/capture/capture_uploader.h"
#include "agent/capture/capturer.h"
#include "common/capture/capture_spec.h"
#include "common/core/clock.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;

TensorData Tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
  return TensorData{name, std::move(shape), std::move(data)};
}

std::vector<TensorData> Input(std::vector<float> values) {
  const auto n = static_cast<int64_t>(values.size());
  return {Tensor("input", {1, n}, std::move(values))};
}

std::vector<TensorData> Probabilities(std::vector<float> p) {
  const auto n = static_cast<int64_t>(p.size());
  return {Tensor("probs", {1, n}, std::move(p))};
}

v1::CaptureSpec Spec() {
  v1::CaptureSpec spec;
  spec.set_enabled(true);
  spec.set_max_bytes_per_day(1 << 20);
  return spec;
}

std::function<double()> Seeded(uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
}

TEST(CapturePolicyTest, RandomCapturesAtItsRateWithinTolerance) {
  v1::CaptureSpec spec = Spec();
  spec.set_random_rate(0.2);
  auto uniform = Seeded(7);
  int captured = 0;
  constexpr int kRequests = 20000;
  for (int i = 0; i < kRequests; ++i) {
    auto t = DecideCapture(spec, Input({1, 2, 3, 4}), Probabilities({0.1f, 0.9f}), {}, uniform);
    if (t.has_value()) {
      EXPECT_EQ(*t, v1::CAPTURE_TRIGGER_RANDOM);
      ++captured;
    }
  }
  EXPECT_NEAR(captured / static_cast<double>(kRequests), 0.2, 0.01);
}

TEST(CapturePolicyTest, TheSampleRateBoundsWhatIsConsidered) {
  v1::CaptureSpec spec = Spec();
  spec.set_sample_rate(0.25);
  spec.set_random_rate(1.0);
  auto uniform = Seeded(11);
  int captured = 0;
  constexpr int kRequests = 20000;
  for (int i = 0; i < kRequests; ++i) {
    captured += DecideCapture(spec, Input({1}), Probabilities({1}), {}, uniform).has_value();
  }
  EXPECT_NEAR(captured / static_cast<double>(kRequests), 0.25, 0.01);
}

TEST(CapturePolicyTest, LowConfidenceCapturesAnswersWhoseTopScoreIsBelowTheThreshold) {
  v1::CaptureSpec spec = Spec();
  spec.set_confidence_below(0.6);
  auto never = [] { return 0.99; };
  EXPECT_EQ(DecideCapture(spec, Input({1}), Probabilities({0.2f, 0.3f, 0.5f}), {}, never),
            v1::CAPTURE_TRIGGER_LOW_CONFIDENCE);
  EXPECT_EQ(DecideCapture(spec, Input({1}), Probabilities({0.05f, 0.9f, 0.05f}), {}, never),
            std::nullopt);
  EXPECT_EQ(TopScore(Probabilities({0.2f, 0.7f, 0.1f})), 0.7f);
  EXPECT_EQ(TopScore({}), std::nullopt);
}

TEST(CapturePolicyTest, AFeatureOutsideItsReferenceRangeIsCaptured) {
  v1::CaptureSpec spec = Spec();
  spec.set_out_of_range(true);
  const std::vector<FeatureRange> ranges = {{0, 1}, {0, 1}, {-1, 1}, {0, 10}};
  auto never = [] { return 0.99; };
  EXPECT_EQ(DecideCapture(spec, Input({0.5f, 0.5f, 0, 5}), Probabilities({1}), ranges, never),
            std::nullopt);
  EXPECT_EQ(DecideCapture(spec, Input({0.5f, 1.5f, 0, 5}), Probabilities({1}), ranges, never),
            v1::CAPTURE_TRIGGER_OUT_OF_RANGE);
  EXPECT_EQ(DecideCapture(spec, Input({0.5f, 0.5f, -2, 5}), Probabilities({1}), ranges, never),
            v1::CAPTURE_TRIGGER_OUT_OF_RANGE);
  // Without ranges (no reference profile held) the trigger never fires.
  EXPECT_EQ(DecideCapture(spec, Input({99, 99, 99, 99}), Probabilities({1}), {}, never),
            std::nullopt);
}

TEST(CapturePolicyTest, RangesComeFromTheReferenceProfilesMinAndMax) {
  v1::ReferenceProfile profile;
  v1::FeatureReference* f = profile.add_features();
  f->set_min(-1);
  f->set_max(2);
  profile.add_features();  // 0..0: a constant feature
  const auto ranges = RangesFromReference(profile);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].min, -1);
  EXPECT_EQ(ranges[0].max, 2);
  // A profile that states no range at all (the fields unset) gives none.
  v1::ReferenceProfile without;
  without.add_features()->add_edges(0.5);
  EXPECT_TRUE(RangesFromReference(without).empty());
}

TEST(CapturePolicyTest, ADisabledSpecCapturesNothing) {
  v1::CaptureSpec spec;
  spec.set_random_rate(1);
  EXPECT_EQ(DecideCapture(spec, Input({1}), Probabilities({1}), {}, [] { return 0.0; }),
            std::nullopt);
}

TEST(CaptureSpecTest, UploadWindowsWrapMidnight) {
  EXPECT_TRUE(capture::InUploadWindow(1, 5, 1));
  EXPECT_TRUE(capture::InUploadWindow(1, 5, 4));
  EXPECT_FALSE(capture::InUploadWindow(1, 5, 5));
  EXPECT_FALSE(capture::InUploadWindow(1, 5, 0));
  EXPECT_TRUE(capture::InUploadWindow(22, 5, 23));
  EXPECT_TRUE(capture::InUploadWindow(22, 5, 2));
  EXPECT_FALSE(capture::InUploadWindow(22, 5, 12));
  for (int h = 0; h < 24; ++h) {
    EXPECT_TRUE(capture::InUploadWindow(0, 0, h));
    EXPECT_TRUE(capture::InUploadWindow(0, 24, h));
  }
}

TEST(CaptureSpecTest, ValidationNamesWhatIsWrong) {
  v1::CaptureSpec spec = Spec();
  spec.set_random_rate(0.1);
  EXPECT_TRUE(capture::ValidateCaptureSpec(spec).ok());
  v1::CaptureSpec bad = spec;
  bad.set_sample_rate(1.5);
  EXPECT_NE(capture::ValidateCaptureSpec(bad).message().find("capture.sample_rate"),
            std::string::npos);
  bad = spec;
  bad.set_random_rate(0);
  EXPECT_NE(capture::ValidateCaptureSpec(bad).message().find("needs a trigger"), std::string::npos);
  bad = spec;
  bad.set_max_bytes_per_day(0);
  EXPECT_NE(capture::ValidateCaptureSpec(bad).message().find("max_bytes_per_day"),
            std::string::npos);
  bad = spec;
  bad.set_upload_end_hour(25);
  EXPECT_NE(capture::ValidateCaptureSpec(bad).message().find("upload_end_hour"), std::string::npos);
  bad = spec;
  bad.set_enabled(false);
  EXPECT_EQ(capture::ValidateCaptureSpec(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(capture::ValidateCaptureSpec(v1::CaptureSpec()).ok());
}

// The agent's state in a temp directory, a fake clock, and a capturer asked to capture every
// request of classifier v2.
class CapturerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("edgefleet-capture-" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_.model_name = "classifier";
    model_.version = "2";
    Reopen();
  }
  void TearDown() override {
    capturer_.reset();
    state_.reset();
    fs::remove_all(dir_);
  }

  // A restart: state read back from disk, a new capturer asked the same again.
  void Reopen() {
    capturer_.reset();
    state_.reset();
    auto state = StateStore::Open((dir_ / "agent.db").string());
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *std::move(state);
    capturer_ = std::make_unique<Capturer>(*state_, clock_, [] { return 0.0; });
    v1::CaptureSpec spec = Spec();
    spec.set_random_rate(1);
    spec.set_max_bytes_per_day(cap_);
    capturer_->SetRequests({CaptureRequest{"classifier", "2", spec, {}}});
  }

  void Predict(float x) {
    absl::StatusOr<std::vector<TensorData>> answer = Probabilities({0.4f, 0.6f});
    capturer_->OnRequest(model_, Input({x, x, x, x}), answer);
  }

  size_t Queued() {
    auto items = state_->Peek(StateStore::OutboxKind::kCapture, 1000);
    EXPECT_TRUE(items.ok());
    return items.ok() ? items->size() : 0;
  }

  // One capture's size, so the cap fits exactly three.
  static uint64_t RecordSize() {
    ServingModel model;
    model.model_name = "classifier";
    model.version = "2";
    CaptureRequest request{"classifier", "2", Spec(), {}};
    return MakeCaptureRecord(model, request, v1::CAPTURE_TRIGGER_RANDOM, Input({1, 1, 1, 1}),
                             Probabilities({0.4f, 0.6f}), FakeClock().Now())
        .ByteSizeLong();
  }

  fs::path dir_;
  FakeClock clock_;
  ServingModel model_;
  uint64_t cap_ = 3 * RecordSize() + RecordSize() / 2;
  std::unique_ptr<StateStore> state_;
  std::unique_ptr<Capturer> capturer_;
};

TEST_F(CapturerTest, TheDailyCapStopsCaptureUntilTheNextDay) {
  for (int i = 0; i < 10; ++i) Predict(static_cast<float>(i));
  EXPECT_EQ(Queued(), 3u);
  EXPECT_EQ(capturer_->counts().captured, 3u);
  EXPECT_EQ(capturer_->counts().over_cap, 7u);
  auto used = state_->CaptureBytesOnDay(ToUnixSeconds(clock_.Now()));
  ASSERT_TRUE(used.ok());
  EXPECT_LE(*used, cap_);

  clock_.Advance(std::chrono::hours(24));
  for (int i = 0; i < 10; ++i) Predict(static_cast<float>(i));
  EXPECT_EQ(Queued(), 6u) << "a new day, a new cap";
}

TEST_F(CapturerTest, ARestartKeepsTheDaysCount) {
  Predict(1);
  Predict(2);
  Reopen();
  for (int i = 0; i < 5; ++i) Predict(static_cast<float>(i));
  EXPECT_EQ(Queued(), 3u) << "the day's bytes survived the restart";
  EXPECT_EQ(capturer_->counts().captured, 1u);
}

TEST_F(CapturerTest, UploadedCapturesStillCountAgainstTheDay) {
  Predict(1);
  Predict(2);
  Predict(3);
  auto items = state_->Peek(StateStore::OutboxKind::kCapture, 10);
  ASSERT_TRUE(items.ok());
  std::vector<int64_t> ids;
  for (const auto& item : *items) ids.push_back(item.id);
  ASSERT_TRUE(state_->Ack(ids).ok());  // the server took them
  Predict(4);
  EXPECT_EQ(Queued(), 0u);
  EXPECT_EQ(capturer_->counts().over_cap, 1u);
}

TEST_F(CapturerTest, OnlyTheTargetedVersionIsCapturedAndTheRecordHoldsTheRequest) {
  ServingModel other = model_;
  other.version = "1";
  absl::StatusOr<std::vector<TensorData>> answer = Probabilities({0.4f, 0.6f});
  capturer_->OnRequest(other, Input({1, 2, 3, 4}), answer);
  capturer_->OnRequest(model_, Input({1, 2, 3, 4}), absl::InternalError("engine failed"));
  EXPECT_EQ(Queued(), 0u);
  capturer_->OnRequest(model_, Input({1, 2, 3, 4}), answer);
  auto items = state_->Peek(StateStore::OutboxKind::kCapture, 10);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  v1::CaptureRecord record;
  ASSERT_TRUE(record.ParseFromString(items->front().payload));
  EXPECT_EQ(record.model_name(), "classifier");
  EXPECT_EQ(record.version(), "2");
  EXPECT_EQ(record.trigger(), v1::CAPTURE_TRIGGER_RANDOM);
  EXPECT_EQ(record.captured_at().seconds(), ToUnixSeconds(clock_.Now()));
  ASSERT_EQ(record.inputs_size(), 1);
  EXPECT_EQ(record.inputs(0).name(), "input");
  EXPECT_EQ(std::vector<int64_t>(record.inputs(0).shape().begin(), record.inputs(0).shape().end()),
            (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(std::vector<float>(record.inputs(0).data().begin(), record.inputs(0).data().end()),
            (std::vector<float>{1, 2, 3, 4}));
  ASSERT_EQ(record.outputs_size(), 1);
  EXPECT_EQ(record.outputs(0).data(1), 0.6f);
}

TEST_F(CapturerTest, NothingAskedCapturesNothing) {
  capturer_->SetRequests({});
  Predict(1);
  EXPECT_EQ(Queued(), 0u);
}

// A device API that keeps what it is sent and accepts it all.
class RecordingTransport final : public DeviceTransport {
 public:
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest&) override {
    return absl::UnimplementedError("CheckIn");
  }
  absl::Status FetchArtifact(const std::string&, uint64_t,
                             const std::function<absl::Status(std::string_view)>&) override {
    return absl::UnimplementedError("FetchArtifact");
  }
  absl::Status ReportEvents(const v1::ReportEventRequest&) override { return absl::OkStatus(); }
  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest&) override {
    return absl::UnimplementedError("UploadTelemetry");
  }
  absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(
      const v1::UploadCaptureRequest& request) override {
    uploads.push_back(request);
    v1::UploadCaptureResponse response;
    for (const auto& c : request.captures()) {
      if (refuse) {
        v1::CaptureRejection* r = response.add_rejected();
        r->set_sequence(c.sequence());
        r->set_reason("over the daily cap");
      } else {
        response.add_accepted_sequences(c.sequence());
      }
    }
    return response;
  }
  std::vector<v1::UploadCaptureRequest> uploads;
  bool refuse = false;
};

// The UTC hour of the fake clock stands for the device's local hour.
int UtcHour(Clock::TimePoint t) {
  const std::time_t s = static_cast<std::time_t>(ToUnixSeconds(t));
  std::tm tm{};
  ::gmtime_r(&s, &tm);
  return tm.tm_hour;
}

class UploaderTest : public CapturerTest {
 protected:
  // Captures `n` requests under a spec whose upload window is [start, end).
  void CaptureWithWindow(int n, uint32_t start, uint32_t end) {
    v1::CaptureSpec spec = Spec();
    spec.set_random_rate(1);
    spec.set_upload_start_hour(start);
    spec.set_upload_end_hour(end);
    capturer_->SetRequests({CaptureRequest{"classifier", "2", spec, {}}});
    for (int i = 0; i < n; ++i) Predict(static_cast<float>(i));
  }
  // Sets the fake clock to `hour`:00 UTC of its day.
  void SetHour(int hour) {
    const int64_t now = ToUnixSeconds(clock_.Now());
    clock_.Set(FromUnixSeconds(now - now % 86400 + hour * 3600));
  }
  absl::StatusOr<CaptureUploader::FlushResult> Flush() {
    return CaptureUploader(*state_, transport_, clock_, UtcHour, [this] { return idle_; }).Flush();
  }

  RecordingTransport transport_;
  bool idle_ = true;
};

TEST_F(UploaderTest, NothingIsUploadedOutsideTheUploadWindow) {
  SetHour(12);
  CaptureWithWindow(2, 1, 5);
  auto result = Flush();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(transport_.uploads.empty());
  EXPECT_EQ(result->outside_window, 2u);
  EXPECT_EQ(Queued(), 2u);

  SetHour(5);  // the window's end is exclusive
  ASSERT_TRUE(Flush().ok());
  EXPECT_TRUE(transport_.uploads.empty());

  SetHour(3);
  result = Flush();
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->accepted, 2u);
  ASSERT_EQ(transport_.uploads.size(), 2u) << "one capture per call";
  EXPECT_EQ(Queued(), 0u) << "acknowledged captures leave the outbox";
  // The idempotency key: the outbox stream and the item's id.
  auto stream = state_->OutboxStreamId();
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(transport_.uploads[0].stream_id(), *stream);
  EXPECT_LT(transport_.uploads[0].captures(0).sequence(),
            transport_.uploads[1].captures(0).sequence());
  v1::CaptureRecord sent;
  ASSERT_TRUE(sent.ParseFromString(transport_.uploads[0].captures(0).record()));
  EXPECT_EQ(sent.model_name(), "classifier");
}

TEST_F(UploaderTest, AWindowWrappingMidnightOpensLateAndEarly) {
  SetHour(20);
  CaptureWithWindow(1, 22, 5);
  ASSERT_TRUE(Flush().ok());
  EXPECT_TRUE(transport_.uploads.empty());
  SetHour(23);
  ASSERT_TRUE(Flush().ok());
  EXPECT_EQ(transport_.uploads.size(), 1u);
}

TEST_F(UploaderTest, NothingIsUploadedWhileTheDeviceIsBusy) {
  SetHour(2);
  CaptureWithWindow(2, 0, 0);
  idle_ = false;
  auto result = Flush();
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->busy);
  EXPECT_TRUE(transport_.uploads.empty());
  EXPECT_EQ(Queued(), 2u);
  idle_ = true;
  ASSERT_TRUE(Flush().ok());
  EXPECT_EQ(Queued(), 0u);
}

TEST_F(UploaderTest, ACaptureRefusedForGoodLeavesTheOutbox) {
  SetHour(2);
  CaptureWithWindow(1, 0, 0);
  transport_.refuse = true;
  auto result = Flush();
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->refused, 1u);
  EXPECT_EQ(Queued(), 0u);
}

}  // namespace
}  // namespace edgefleet::agent
