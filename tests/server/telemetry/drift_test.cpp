// Drift of a model version against its reference: the scoring of merged window bins (pure), and
// the DriftService on PostgreSQL (per-model thresholds) with fake telemetry sources: ranges and
// series, validation, and the Prometheus gauges with no device label.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "common/metrics/metrics.h"
#include "server/store/drift_threshold_repo.h"
#include "server/telemetry/drift_evaluation.h"
#include "server/telemetry/drift_service.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server::telemetry {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNow = 1'800'000'000;
const std::string kBinning(32, 'p');

v1::FeatureReference Reference(std::vector<uint64_t> bins) {
  v1::FeatureReference r;
  for (size_t i = 0; i + 1 < bins.size(); ++i) r.add_edges(static_cast<double>(i));
  for (uint64_t b : bins) r.add_bins(b);
  return r;
}

v1::FeatureWindow Observed(std::vector<uint64_t> bins) {
  v1::FeatureWindow w;
  for (uint64_t b : bins) w.add_bins(b);
  return w;
}

// Two features and class outputs, each over four bins of 2,500 reference samples.
VersionReference TwoFeatureReference() {
  VersionReference ref;
  ref.binning_sha256 = kBinning;
  ref.profile.set_source(v1::REFERENCE_SOURCE_UPLOADED);
  ref.profile.set_samples(10'000);
  *ref.profile.add_features() = Reference({2500, 2500, 2500, 2500});
  *ref.profile.add_features() = Reference({2500, 2500, 2500, 2500});
  *ref.profile.mutable_outputs() = Reference({5000, 5000});
  ref.profile.set_profile_sha256(kBinning);
  return ref;
}

ObservedBins Field(std::vector<uint64_t> f0, std::vector<uint64_t> f1,
                   std::vector<uint64_t> outputs, uint64_t windows = 10,
                   const std::string& binning = kBinning) {
  ObservedBins bins;
  bins.profile_sha256 = binning;
  bins.windows = windows;
  bins.features = {Observed(std::move(f0)), Observed(std::move(f1))};
  bins.outputs = Observed(std::move(outputs));
  return bins;
}

TEST(EvaluateDriftTest, AShiftedFeatureAlertsWhileTheOthersStayOk) {
  const v1::DriftPoint point =
      EvaluateDrift(TwoFeatureReference(),
                    {Field({100, 200, 700, 1000}, {500, 500, 500, 500}, {1000, 1000})}, {});
  ASSERT_EQ(point.features_size(), 2);
  EXPECT_EQ(point.features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_GT(point.features(0).score().psi(), 0.25);
  EXPECT_GT(point.features(0).score().js_distance(), 0);
  EXPECT_EQ(point.features(1).score().level(), v1::DRIFT_LEVEL_OK);
  EXPECT_LT(point.features(1).score().psi(), 0.1);
  EXPECT_EQ(point.outputs().level(), v1::DRIFT_LEVEL_OK);
  EXPECT_EQ(point.level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_EQ(point.windows(), 10u);
  EXPECT_EQ(point.features(0).score().reference_samples(), 10'000u);
  EXPECT_EQ(point.features(0).score().current_samples(), 2000u);
}

TEST(EvaluateDriftTest, FewSamplesAreInsufficientDataNotANumber) {
  const v1::DriftPoint point = EvaluateDrift(
      TwoFeatureReference(), {Field({10, 20, 700, 200}, {250, 250, 250, 249}, {400, 500})}, {});
  EXPECT_EQ(point.features(0).score().level(), v1::DRIFT_LEVEL_INSUFFICIENT_DATA);
  EXPECT_FALSE(point.features(0).score().has_psi());
  EXPECT_FALSE(point.features(0).score().has_js_distance());
  EXPECT_EQ(point.features(0).score().current_samples(), 930u);
  EXPECT_EQ(point.features(1).score().level(), v1::DRIFT_LEVEL_INSUFFICIENT_DATA);
  EXPECT_EQ(point.level(), v1::DRIFT_LEVEL_INSUFFICIENT_DATA);

  // The model's own minimum decides.
  const v1::DriftPoint lower = EvaluateDrift(
      TwoFeatureReference(), {Field({10, 20, 700, 200}, {250, 250, 250, 249}, {400, 500})},
      {.warn = 0.1, .alert = 0.25, .min_samples = 900});
  EXPECT_EQ(lower.features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_EQ(lower.features(1).score().level(), v1::DRIFT_LEVEL_OK);
}

TEST(EvaluateDriftTest, NoWindowsScoreAsZeroSamples) {
  const v1::DriftPoint point = EvaluateDrift(TwoFeatureReference(), {}, {});
  ASSERT_EQ(point.features_size(), 2);
  EXPECT_EQ(point.features(0).score().current_samples(), 0u);
  EXPECT_EQ(point.features(0).score().reference_samples(), 10'000u);
  EXPECT_EQ(point.outputs().level(), v1::DRIFT_LEVEL_INSUFFICIENT_DATA);
  EXPECT_EQ(point.windows(), 0u);
}

TEST(EvaluateDriftTest, WindowsOfAnotherBinningAreCountedButNeverCompared) {
  // A heavily shifted histogram under another profile must not make the version drift.
  const v1::DriftPoint point =
      EvaluateDrift(TwoFeatureReference(),
                    {Field({0, 0, 0, 9000}, {0, 0, 0, 9000}, {9000, 0}, 7, std::string(32, 'x')),
                     Field({500, 500, 500, 500}, {500, 500, 500, 500}, {1000, 1000}, 3)},
                    {});
  EXPECT_EQ(point.windows(), 3u);
  EXPECT_EQ(point.other_profile_windows(), 7u);
  EXPECT_EQ(point.level(), v1::DRIFT_LEVEL_OK);
}

TEST(EvaluateDriftTest, ABinCountMismatchIsNoNumber) {
  const v1::DriftPoint point = EvaluateDrift(
      TwoFeatureReference(), {Field({500, 500, 1000}, {500, 500, 500, 500}, {1000, 1000})}, {});
  EXPECT_EQ(point.features(0).score().level(), v1::DRIFT_LEVEL_INSUFFICIENT_DATA);
  EXPECT_EQ(point.features(1).score().level(), v1::DRIFT_LEVEL_OK);
  EXPECT_EQ(point.level(), v1::DRIFT_LEVEL_OK);
}

TEST(EvaluateDriftTest, ThresholdsAreStrict) {
  const v1::DriftPoint at =
      EvaluateDrift(TwoFeatureReference(),
                    {Field({100, 200, 700, 1000}, {500, 500, 500, 500}, {1000, 1000})}, {});
  const double psi = at.features(0).score().psi();
  const v1::DriftPoint equal = EvaluateDrift(
      TwoFeatureReference(), {Field({100, 200, 700, 1000}, {500, 500, 500, 500}, {1000, 1000})},
      {.warn = psi / 2, .alert = psi, .min_samples = 1000});
  EXPECT_EQ(equal.features(0).score().level(), v1::DRIFT_LEVEL_WARN) << "equal to alert: warn";
}

// Telemetry sources the test sets: a reference per version and bins per (version, hw), with the
// ranges asked recorded.
class FakeSources final : public DriftSources {
 public:
  std::map<std::string, std::optional<VersionReference>> references;              // by version
  std::map<std::pair<std::string, std::string>, std::vector<ObservedBins>> bins;  // (version, hw)
  std::vector<VersionKey> active;
  std::vector<std::pair<Clock::TimePoint, Clock::TimePoint>> asked;

  absl::StatusOr<std::optional<VersionReference>> Reference(const std::string&,
                                                            const std::string& version) override {
    auto it = references.find(version);
    if (it == references.end()) return absl::NotFoundError("no such version");
    return it->second;
  }
  absl::StatusOr<std::vector<std::vector<ObservedBins>>> ObservedSeries(
      const std::string&, const std::string& version, const std::optional<std::string>& hw,
      Clock::TimePoint from, Clock::TimePoint to, std::chrono::seconds step) override {
    std::vector<std::vector<ObservedBins>> points;
    for (Clock::TimePoint start = from; start < to; start += step) {
      asked.emplace_back(start, std::min(start + step, to));
      auto it = bins.find({version, hw.value_or("*")});
      points.push_back(it == bins.end() ? std::vector<ObservedBins>{} : it->second);
    }
    return points;
  }
  absl::StatusOr<std::vector<VersionKey>> Active(Clock::TimePoint, Clock::TimePoint) override {
    return active;
  }
};

class DriftServiceTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    clock_.Set(FromUnixSeconds(kNow));
    models_ = std::make_unique<ModelRepo>(*db_);
    PublishVersion(*db_, *models_, "classifier", "1", 'a');
    PublishVersion(*db_, *models_, "classifier", "2", 'b');
    sources_.references["1"] = TwoFeatureReference();
    sources_.references["2"] = std::nullopt;  // a fleet reference still collecting
    sources_.bins[{"1", "*"}] = {Field({100, 200, 700, 1000}, {500, 500, 500, 500}, {1000, 1000})};
    sources_.bins[{"1", "jetson"}] = {
        Field({500, 500, 500, 500}, {500, 500, 500, 500}, {1000, 1000})};
    service_ = std::make_unique<DriftService>(*db_, thresholds_, sources_, clock_);
  }

  v1::GetModelDriftRequest Request(const std::string& version = "1") {
    v1::GetModelDriftRequest r;
    r.set_model_name("classifier");
    r.set_version(version);
    return r;
  }

  FakeClock clock_;
  std::unique_ptr<ModelRepo> models_;
  DriftThresholdRepo thresholds_;
  FakeSources sources_;
  std::unique_ptr<DriftService> service_;
};

TEST_F(DriftServiceTest, OnePointOverTheDefaultHourWithTheDefaultThresholds) {
  auto drift = service_->GetDrift(Request());
  ASSERT_TRUE(drift.ok()) << drift.status();
  ASSERT_EQ(drift->points_size(), 1);
  EXPECT_EQ(drift->points(0).start().seconds(), kNow - 3600);
  EXPECT_EQ(drift->points(0).end().seconds(), kNow);
  EXPECT_EQ(drift->points(0).features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_EQ(drift->reference_source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(drift->reference_samples(), 10'000u);
  EXPECT_TRUE(drift->thresholds().is_default());
  EXPECT_EQ(drift->thresholds().warn(), 0.1);
  EXPECT_EQ(drift->thresholds().alert(), 0.25);
  EXPECT_EQ(drift->thresholds().min_samples(), 1000u);

  // Per hw: only those devices' windows.
  auto request = Request();
  request.set_hw("jetson");
  auto jetson = service_->GetDrift(request);
  ASSERT_TRUE(jetson.ok()) << jetson.status();
  EXPECT_EQ(jetson->points(0).level(), v1::DRIFT_LEVEL_OK);
  EXPECT_EQ(jetson->hw(), "jetson");
}

TEST_F(DriftServiceTest, AStepMakesASeriesCoveringTheRange) {
  auto request = Request();
  request.set_from("-2h");
  request.set_to("now");
  request.set_step("45m");
  auto drift = service_->GetDrift(request);
  ASSERT_TRUE(drift.ok()) << drift.status();
  ASSERT_EQ(drift->points_size(), 3);
  EXPECT_EQ(drift->points(0).start().seconds(), kNow - 7200);
  EXPECT_EQ(drift->points(1).start().seconds(), kNow - 7200 + 2700);
  EXPECT_EQ(drift->points(2).end().seconds(), kNow) << "the last point ends at `to`";
  ASSERT_EQ(sources_.asked.size(), 3u);

  request.set_from("2027-01-15T06:00:00Z");
  request.set_to("2027-01-15T07:00:00+00:00");
  request.set_step("1h");
  auto absolute = service_->GetDrift(request);
  ASSERT_TRUE(absolute.ok()) << absolute.status();
  ASSERT_EQ(absolute->points_size(), 1);
  EXPECT_EQ(absolute->points(0).start().seconds(), kNow - 7200);
}

TEST_F(DriftServiceTest, BadRequestsNameTheField) {
  const std::vector<std::pair<std::function<void(v1::GetModelDriftRequest&)>, std::string>> kCases =
      {
          {[](auto& r) { r.clear_model_name(); }, "model_name"},
          {[](auto& r) { r.clear_version(); }, "version"},
          {[](auto& r) { r.set_from("yesterday"); }, "from"},
          {[](auto& r) { r.set_to("2027-13-40T00:00:00Z"); }, "to"},
          {[](auto& r) { r.set_from("-1h"), r.set_to("-2h"); }, "from: must be before to"},
          {[](auto& r) { r.set_step("10s"); }, "step: must be a whole number of minutes"},
          {[](auto& r) { r.set_step("soon"); }, "step"},
          {[](auto& r) { r.set_from("-30d"), r.set_step("1m"); }, "at most 1500"},
      };
  for (const auto& [mutate, message] : kCases) {
    auto request = Request();
    mutate(request);
    auto drift = service_->GetDrift(request);
    EXPECT_EQ(drift.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(drift.status().message(), HasSubstr(message));
  }
  EXPECT_EQ(service_->GetDrift(Request("9")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DriftServiceTest, AVersionWithoutAReferenceSaysWhyItHasNoNumbers) {
  auto drift = service_->GetDrift(Request("2"));
  ASSERT_TRUE(drift.ok()) << drift.status();
  EXPECT_EQ(drift->points_size(), 0);
  EXPECT_EQ(drift->reference_source(), v1::REFERENCE_SOURCE_UNSPECIFIED);
  EXPECT_THAT(drift->note(), HasSubstr("no reference profile yet"));
}

TEST_F(DriftServiceTest, ThresholdsSetForAModelJudgeEveryLaterRead) {
  v1::SetDriftThresholdsRequest set;
  set.set_model_name("classifier");
  set.set_warn(2);
  set.set_alert(5);
  auto stored =
      db_->Transact("set", [&](Tx& tx) { return service_->SetThresholds(tx, "alice", set); });
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_FALSE(stored->is_default());
  EXPECT_EQ(stored->min_samples(), 1000u) << "0 means the default minimum";
  EXPECT_EQ(stored->updated_at().seconds(), kNow);

  auto drift = service_->GetDrift(Request());
  ASSERT_TRUE(drift.ok()) << drift.status();
  EXPECT_EQ(drift->thresholds().warn(), 2);
  EXPECT_EQ(drift->points(0).features(0).score().level(), v1::DRIFT_LEVEL_OK)
      << "the same PSI is within the model's thresholds";

  // Replaced, not added.
  set.set_warn(0.01);
  set.set_alert(0.02);
  set.set_min_samples(10);
  ASSERT_TRUE(
      db_->Transact("set", [&](Tx& tx) { return service_->SetThresholds(tx, "bob", set); }).ok());
  EXPECT_EQ(pg_.QueryValue("SELECT count(*) FROM model_drift_thresholds"), "1");
  EXPECT_EQ(pg_.QueryValue("SELECT updated_by FROM model_drift_thresholds"), "bob");
  drift = service_->GetDrift(Request());
  ASSERT_TRUE(drift.ok());
  EXPECT_EQ(drift->points(0).features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_EQ(drift->points(0).features(1).score().level(), v1::DRIFT_LEVEL_OK) << "PSI 0";
}

TEST_F(DriftServiceTest, BadThresholdsAreRefusedAndUnknownModelsAreNotFound) {
  const std::vector<std::tuple<double, double, std::string>> kBad = {
      {0, 0.25, "warn must be a PSI above 0"},
      {-1, 0.25, "warn"},
      {0.3, 0.25, "alert must be above warn"},
      {0.1, 0.1, "alert must be above warn"},
      {0.1, 11, "at most 10"},
      {std::nan(""), 0.25, "warn"},
  };
  for (const auto& [warn, alert, message] : kBad) {
    v1::SetDriftThresholdsRequest set;
    set.set_model_name("classifier");
    set.set_warn(warn);
    set.set_alert(alert);
    absl::Status s = ValidateDriftThresholds(set);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(s.message(), HasSubstr(message));
  }
  v1::SetDriftThresholdsRequest unknown;
  unknown.set_model_name("nope");
  unknown.set_warn(0.1);
  unknown.set_alert(0.2);
  auto stored =
      db_->Transact("set", [&](Tx& tx) { return service_->SetThresholds(tx, "alice", unknown); });
  EXPECT_EQ(stored.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DriftServiceTest, GaugesFollowTheVersionsThatReportAndCarryNoDeviceLabel) {
  metrics::Registry registry;
  DriftGauges gauges(registry);
  sources_.active = {{"classifier", "1", ""}, {"classifier", "2", ""}};
  // The unlabelled series (hw "") reads every device of hw "": use the shifted bins for it.
  sources_.bins[{"1", ""}] = sources_.bins[{"1", "*"}];
  ASSERT_TRUE(service_->RefreshGauges(gauges).ok());
  const std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("edgefleet_drift_psi{feature=\"0\",model=\"classifier\","
                              "version=\"1\"}"));
  EXPECT_THAT(text, HasSubstr("edgefleet_drift_js_distance{feature=\"output\""));
  EXPECT_THAT(text, HasSubstr("edgefleet_drift_alert_threshold{model=\"classifier\"} 0.25"));
  EXPECT_THAT(text, HasSubstr("edgefleet_drift_warn_threshold{model=\"classifier\"} 0.1"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("version=\"2\""))) << "no reference: no series";
  EXPECT_THAT(text, ::testing::Not(HasSubstr("device")));
  EXPECT_TRUE(gauges.psi.Has({{"model", "classifier"}, {"version", "1"}, {"feature", "1"}}));
  EXPECT_LT(gauges.psi.Add({{"model", "classifier"}, {"version", "1"}, {"feature", "1"}}).Value(),
            0.1);
  EXPECT_GT(gauges.psi.Add({{"model", "classifier"}, {"version", "1"}, {"feature", "0"}}).Value(),
            0.25);

  // The version stops reporting: its series go.
  sources_.active.clear();
  ASSERT_TRUE(service_->RefreshGauges(gauges).ok());
  const std::string after = registry.Serialize();
  EXPECT_THAT(after, ::testing::Not(HasSubstr("edgefleet_drift_psi{")));
  EXPECT_THAT(after, ::testing::Not(HasSubstr("edgefleet_drift_alert_threshold{")));
}

TEST_F(DriftServiceTest, GaugesAreScoredOffAMinuteBoundaryToo) {
  // The gauges' range is aligned down to the roll-ups' minute; it must still be one point.
  clock_.Set(FromUnixSeconds(kNow + 30));
  metrics::Registry registry;
  DriftGauges gauges(registry);
  sources_.active = {{"classifier", "1", ""}};
  sources_.bins[{"1", ""}] = sources_.bins[{"1", "*"}];
  ASSERT_TRUE(service_->RefreshGauges(gauges).ok());
  EXPECT_GT(gauges.psi.Add({{"model", "classifier"}, {"version", "1"}, {"feature", "0"}}).Value(),
            0.25);
}

}  // namespace
}  // namespace edgefleet::server::telemetry
