// The fleet-derived reference through the operator's path: a version pushed without
// `--reference` has none, and the API says it is pending with n of K windows; once K windows
// with requests have come in from the fleet's agents, the server merges them into the
// version's reference (source FLEET), made once; GetReferenceProfile over REST returns it, its
// bins exactly the sum of K stored windows; drift is scored against it (quiet while the input
// stays as it was, an alert on the feature the agents then see shifted, in REST, the CLI and
// /metrics); later windows, even an offline agent's that start before the ones it was made
// from, leave it as it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>

#include "absl/strings/str_split.h"
#include "common/crypto/sha256.h"
#include "common/telemetry/reference_profile.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr int kFeatures = 4;
constexpr int kWindowsNeeded = 4;  // --fleet-reference-windows
constexpr int kRows = 500;         // Predicts of one batch (one row each)
// Features are normal around 5 (sd 1): the default binning's log-spaced edges put that in about
// eight bins (2, 2.5, 3.15, 4, 5, 6.3, 8), so a few thousand samples give a steady PSI.
constexpr double kMean = 5.0;
constexpr double kShift = 3.0;  // feature 0 moves by three standard deviations

class FleetReferenceTest : public IntegrationTest {
 protected:
  // Starts `count` agents with short telemetry windows; waits until all are active.
  void StartAgents(int count) {
    const std::string token = NewEnrollmentToken(count);
    for (int i = 1; i <= count; ++i) {
      AgentHarness& agent = AddAgent("cam-" + std::to_string(i));
      agent.set_extra_args({"--telemetry-interval-seconds", "2"});
      agent.Start(server_->device_address(), server_->ca_file(), token);
    }
    ASSERT_TRUE(WaitForActiveDevices(count));
  }

  // Pushes the classifier as `version` without a reference sample (the CLI, as JSON) and
  // deploys it to every device; returns what the push answered once every device serves it.
  std::optional<v1::ModelVersion> PushAndServe(const std::string& file,
                                               const std::string& version) {
    CommandResult pushed =
        CtlOk({"model", "push", "classifier", TestModel(file), "--version", version, "--input",
               "input:1x4", "--output", "probs:1x3", "-o", "json"});
    auto answer = ParseJson<v1::ModelVersion>(pushed.out);
    EXPECT_TRUE(answer.has_value()) << pushed.out;
    v1::Deployment deployment;
    grpc::Status deployed = server_->CreateDeployment("classifier", version, "", &deployment);
    EXPECT_TRUE(deployed.ok()) << deployed.error_message();
    // Served without a Predict of ours: every request in the windows is one this test sent.
    const bool serving = WaitFor(
        [&] {
          v1::Deployment d;
          if (!server_->GetDeployment(deployment.deployment_id(), &d).ok()) return false;
          if (d.targets_size() != static_cast<int>(agents_.size())) return false;
          for (const auto& t : d.targets()) {
            if (t.state() != v1::DEPLOYMENT_TARGET_STATE_SERVING) return false;
          }
          return true;
        },
        kLongWait, 100ms);
    EXPECT_TRUE(serving) << "version " << version << " not served by every device";
    return serving ? answer : std::nullopt;
  }

  // `rows` Predicts on `agent`, each one row of kFeatures normal(kMean, 1) features, feature 0
  // moved by `shift`; returns how many succeeded.
  static int SendRows(const AgentHarness& agent, int rows, double shift, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(static_cast<float>(kMean), 1);
    auto stub = agent.NewInferenceStub();
    int ok = 0;
    for (int i = 0; i < rows; ++i) {
      v1::PredictRequest request;
      request.set_model_name("classifier");
      v1::Tensor* input = request.add_inputs();
      *input = Expected("classifier_v1.onnx").inputs.at(0);
      input->clear_data();
      for (int f = 0; f < kFeatures; ++f) {
        input->add_data(normal(rng) + static_cast<float>(f == 0 ? shift : 0));
      }
      v1::PredictResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 5s);
      ok += stub->Predict(&context, request, &response).ok();
    }
    return ok;
  }

  // The version as `GET /v1/models/classifier` describes it (with its reference summary).
  std::optional<v1::ModelVersion> RestVersion(const std::string& version) {
    auto res = server_->Http()->Get("/v1/models/classifier", server_->AuthHeaders());
    if (!res || res->status != 200) return std::nullopt;
    auto model = ParseJson<v1::Model>(res->body);
    if (!model.has_value()) return std::nullopt;
    for (const v1::ModelVersion& v : model->versions()) {
      if (v.version() == version) return v;
    }
    return std::nullopt;
  }

  std::optional<v1::ReferenceProfile> RestReference(const std::string& version, int* status) {
    auto res = server_->Http()->Get("/v1/models/classifier/versions/" + version + "/reference",
                                    server_->AuthHeaders());
    *status = res ? res->status : 0;
    if (!res || res->status != 200) return std::nullopt;
    return ParseJson<v1::ReferenceProfile>(res->body);
  }

  std::optional<v1::ModelDrift> RestDrift(const std::string& version) {
    auto res = server_->Http()->Get(
        "/v1/models/classifier/versions/" + version + "/drift?from=-30m", server_->AuthHeaders());
    if (!res || res->status != 200) return std::nullopt;
    return ParseJson<v1::ModelDrift>(res->body);
  }

  // Waits until `version`'s reference is the fleet's, sending `rows` more Predicts from the
  // agents `from` (all when empty) in turn, feature 0 moved by `shift`, while it is not: K
  // windows are not there yet.
  std::optional<v1::ModelVersion> DriveUntilFleetReference(
      const std::string& version, int rows, double shift, uint32_t seed,
      std::vector<const AgentHarness*> from = {}) {
    if (from.empty()) {
      for (const auto& agent : agents_) from.push_back(agent.get());
    }
    std::optional<v1::ModelVersion> described;
    const bool made = WaitFor(
        [&] {
          described = RestVersion(version);
          if (described.has_value() &&
              described->reference().source() == v1::REFERENCE_SOURCE_FLEET) {
            return true;
          }
          const AgentHarness& agent = *from[seed % from.size()];
          EXPECT_EQ(SendRows(agent, rows, shift, seed), rows);
          ++seed;
          return false;
        },
        kLongWait, 500ms);
    EXPECT_TRUE(made) << "no fleet reference for version " << version;
    return made ? described : std::nullopt;
  }

  // Waits until the drift of `version` has one point whose features count `samples` each.
  std::optional<v1::ModelDrift> WaitForDrift(const std::string& version, uint64_t samples) {
    std::optional<v1::ModelDrift> drift;
    const bool counted = WaitFor(
        [&] {
          drift = RestDrift(version);
          return drift.has_value() && drift->points_size() == 1 &&
                 drift->points(0).features_size() == kFeatures &&
                 drift->points(0).features(0).score().current_samples() >= samples;
        },
        kLongWait, 250ms);
    EXPECT_TRUE(counted) << (drift.has_value() ? drift->DebugString() : "no answer");
    return counted ? drift : std::nullopt;
  }

  // The windows with requests the server stored for `version` (of `device`, or of all), as the
  // agents sent them.
  std::vector<v1::TelemetryWindow> StoredWindows(const std::string& version,
                                                 const std::string& device = "") {
    const std::string hex = db_->QueryValue(
        "SELECT coalesce(string_agg(encode(summary, 'hex'), ','), '') FROM telemetry_windows "
        "WHERE model_name = 'classifier' AND version = '" +
        version + "' AND request_count > 0" +
        (device.empty() ? "" : " AND device_id = '" + device + "'"));
    std::vector<v1::TelemetryWindow> windows;
    for (absl::string_view part : absl::StrSplit(hex, ',', absl::SkipEmpty())) {
      v1::TelemetryWindow w;
      EXPECT_TRUE(w.ParseFromString(crypto::FromHex(std::string(part)).value()));
      windows.push_back(std::move(w));
    }
    return windows;
  }
};

// Bin by bin sums of `windows` in the shape of a profile (features, then outputs).
std::vector<std::vector<uint64_t>> SumBins(const std::vector<const v1::TelemetryWindow*>& windows) {
  std::vector<std::vector<uint64_t>> sums;
  for (const v1::TelemetryWindow* w : windows) {
    sums.resize(w->features_size() + 1);
    const auto add = [](std::vector<uint64_t>& into, const auto& bins) {
      into.resize(std::max<size_t>(into.size(), bins.size()));
      for (int b = 0; b < bins.size(); ++b) into[b] += bins[b];
    };
    for (int f = 0; f < w->features_size(); ++f) add(sums[f], w->features(f).bins());
    add(sums.back(), w->outputs().bins());
  }
  return sums;
}

std::vector<std::vector<uint64_t>> BinsOf(const v1::ReferenceProfile& profile) {
  std::vector<std::vector<uint64_t>> bins;
  for (const auto& f : profile.features()) bins.emplace_back(f.bins().begin(), f.bins().end());
  bins.emplace_back(profile.outputs().bins().begin(), profile.outputs().bins().end());
  return bins;
}

// Whether some `k` of `windows` add up to `profile`'s bins and samples.
bool SomeWindowsMakeUp(const v1::ReferenceProfile& profile,
                       const std::vector<v1::TelemetryWindow>& windows, size_t k) {
  if (windows.size() < k) return false;
  const auto want = BinsOf(profile);
  std::vector<bool> pick(windows.size(), false);
  std::fill(pick.end() - static_cast<std::ptrdiff_t>(k), pick.end(), true);
  do {
    std::vector<const v1::TelemetryWindow*> chosen;
    uint64_t requests = 0;
    for (size_t i = 0; i < windows.size(); ++i) {
      if (!pick[i]) continue;
      chosen.push_back(&windows[i]);
      requests += windows[i].request_count();
    }
    if (requests == profile.samples() && SumBins(chosen) == want) return true;
  } while (std::next_permutation(pick.begin(), pick.end()));
  return false;
}

TEST_F(FleetReferenceTest, FirstWindowsBecomeTheReferenceOnceAndDriftIsScoredAgainstIt) {
  server_->set_extra_args({"--fleet-reference-windows", std::to_string(kWindowsNeeded),
                           "--fleet-reference-interval-seconds", "1",
                           "--telemetry-rollup-interval-seconds", "1"});
  server_->Start();
  StartAgents(3);
  ASSERT_FALSE(HasFatalFailure());
  AgentHarness& cam1 = *agents_[0];
  AgentHarness& cam2 = *agents_[1];
  AgentHarness& cam3 = *agents_[2];

  // Pushed without a reference: none yet, pending with none of the K windows.
  auto pushed = PushAndServe("classifier_v1.onnx", "1");
  ASSERT_TRUE(pushed.has_value());
  EXPECT_EQ(pushed->reference().source(), v1::REFERENCE_SOURCE_UNSPECIFIED);
  EXPECT_EQ(pushed->reference().detail(), "pending, 0 of 4 windows");
  EXPECT_TRUE(pushed->reference().profile_sha256().empty());
  // Each window of the version must carry enough samples for a drift number.
  auto thresholds = server_->Http()->Post(
      "/v1/models/classifier/drift-thresholds", server_->AuthHeaders(),
      R"({"warn": 0.1, "alert": 0.25, "minSamples": 500})", "application/json");
  ASSERT_TRUE(thresholds);
  ASSERT_EQ(thresholds->status, 200) << thresholds->body;

  // One agent's traffic (one or two windows of it, as it falls on the 2 s cut): still pending,
  // now with n of K counted, and drift has nothing to measure against yet.
  uint64_t sent = 0;
  ASSERT_EQ(SendRows(cam1, kRows, 0, 1), kRows);
  sent += kRows;
  std::optional<v1::ModelVersion> described;
  ASSERT_TRUE(WaitFor(
      [&] {
        described = RestVersion("1");
        return described.has_value() &&
               described->reference().detail() != "pending, 0 of 4 windows";
      },
      kLongWait, 100ms));
  EXPECT_EQ(described->reference().source(), v1::REFERENCE_SOURCE_UNSPECIFIED);
  EXPECT_THAT(described->reference().detail(), MatchesRegex("pending, [123] of 4 windows"));
  EXPECT_THAT(CtlOk({"model", "get", "classifier"}).out, HasSubstr("none (pending, "));
  auto no_reference = RestDrift("1");
  ASSERT_TRUE(no_reference.has_value());
  EXPECT_EQ(no_reference->reference_source(), v1::REFERENCE_SOURCE_UNSPECIFIED);
  int status = 0;
  EXPECT_FALSE(RestReference("1", &status).has_value());
  EXPECT_EQ(status, 404);

  // The other agents, then the first again: at least K windows in all, so the reference is
  // made, and the API says it is the fleet's.
  ASSERT_EQ(SendRows(cam2, kRows, 0, 2), kRows);
  ASSERT_EQ(SendRows(cam3, kRows, 0, 3), kRows);
  ASSERT_EQ(SendRows(cam1, kRows, 0, 4), kRows);
  sent += 3 * kRows;
  ASSERT_TRUE(WaitFor(
      [&] {
        described = RestVersion("1");
        return described.has_value() &&
               described->reference().source() != v1::REFERENCE_SOURCE_UNSPECIFIED;
      },
      kLongWait, 100ms));
  const v1::ReferenceSummary summary = described->reference();
  EXPECT_EQ(summary.source(), v1::REFERENCE_SOURCE_FLEET);
  EXPECT_EQ(summary.windows(), static_cast<uint64_t>(kWindowsNeeded));
  EXPECT_EQ(summary.feature_count(), static_cast<uint32_t>(kFeatures));
  EXPECT_GE(summary.samples(), static_cast<uint64_t>(kRows));
  EXPECT_LE(summary.samples(), sent);
  ASSERT_EQ(summary.profile_sha256().size(), 32u);
  EXPECT_THAT(
      CtlOk({"model", "get", "classifier"}).out,
      HasSubstr("fleet, 4 windows, " + std::to_string(summary.samples()) + " samples, 4 features"));

  // The whole profile over REST: the default edges, bins that hold every sample, and exactly
  // the sum of K of the windows the agents sent.
  auto profile = RestReference("1", &status);
  ASSERT_TRUE(profile.has_value()) << status;
  EXPECT_EQ(profile->source(), v1::REFERENCE_SOURCE_FLEET);
  EXPECT_EQ(profile->profile_sha256(), summary.profile_sha256());
  EXPECT_EQ(telemetry::ProfileSha256(*profile), profile->profile_sha256());
  EXPECT_EQ(profile->windows(), static_cast<uint64_t>(kWindowsNeeded));
  EXPECT_EQ(profile->samples(), summary.samples());
  ASSERT_EQ(profile->features_size(), kFeatures);
  const std::vector<double>& edges = telemetry::DefaultEdges();
  for (int f = 0; f < kFeatures; ++f) {
    const v1::FeatureReference& feature = profile->features(f);
    EXPECT_EQ(std::vector<double>(feature.edges().begin(), feature.edges().end()), edges) << f;
    uint64_t total = 0;
    for (uint64_t b : feature.bins()) total += b;
    EXPECT_EQ(total, profile->samples()) << "feature " << f;
    EXPECT_GT(feature.min(), 0) << "feature " << f;
    EXPECT_LT(feature.min(), kMean) << "feature " << f;
    EXPECT_GT(feature.max(), kMean) << "feature " << f;
  }
  uint64_t outputs = 0;
  for (uint64_t b : profile->outputs().bins()) outputs += b;
  EXPECT_EQ(outputs, profile->samples()) << "one class per row";
  const std::vector<v1::TelemetryWindow> stored = StoredWindows("1");
  EXPECT_GE(stored.size(), static_cast<size_t>(kWindowsNeeded));
  v1::ModelVersion shapes;
  *shapes.mutable_inputs() = pushed->inputs();
  *shapes.mutable_outputs() = pushed->outputs();
  for (const v1::TelemetryWindow& w : stored) {
    EXPECT_EQ(w.profile_sha256(), telemetry::DefaultProfile(shapes).profile_sha256());
  }
  EXPECT_TRUE(SomeWindowsMakeUp(*profile, stored, kWindowsNeeded))
      << "the profile is not the sum of " << kWindowsNeeded << " of the " << stored.size()
      << " stored windows";

  // More of the same input: scored against the fleet reference, every feature quiet.
  ASSERT_EQ(SendRows(cam1, kRows, 0, 5), kRows);
  ASSERT_EQ(SendRows(cam2, kRows, 0, 6), kRows);
  ASSERT_EQ(SendRows(cam3, kRows, 0, 7), kRows);
  sent += 3 * kRows;
  auto quiet = WaitForDrift("1", sent);
  ASSERT_TRUE(quiet.has_value());
  EXPECT_EQ(quiet->reference_source(), v1::REFERENCE_SOURCE_FLEET);
  EXPECT_EQ(quiet->reference_samples(), profile->samples());
  for (int f = 0; f < kFeatures; ++f) {
    const v1::DriftScore& score = quiet->points(0).features(f).score();
    EXPECT_EQ(score.reference_samples(), profile->samples()) << "feature " << f;
    EXPECT_EQ(score.current_samples(), sent) << "feature " << f;
    EXPECT_TRUE(score.has_psi()) << "feature " << f;
    EXPECT_LT(score.psi(), 0.1) << "feature " << f;
    EXPECT_EQ(score.level(), v1::DRIFT_LEVEL_OK) << "feature " << f;
  }
  EXPECT_EQ(quiet->points(0).other_profile_windows(), 0u);

  // The agents' input shifts in feature 0: that feature alerts, the others stay quiet.
  ASSERT_EQ(SendRows(cam1, kRows, kShift, 8), kRows);
  ASSERT_EQ(SendRows(cam2, kRows, kShift, 9), kRows);
  ASSERT_EQ(SendRows(cam3, kRows, kShift, 10), kRows);
  sent += 3 * kRows;
  auto shifted = WaitForDrift("1", sent);
  ASSERT_TRUE(shifted.has_value());
  const v1::DriftPoint& point = shifted->points(0);
  EXPECT_EQ(point.features(0).score().current_samples(), sent);
  EXPECT_GT(point.features(0).score().psi(), 0.25);
  EXPECT_EQ(point.features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  for (int f = 1; f < kFeatures; ++f) {
    EXPECT_LT(point.features(f).score().psi(), 0.1) << "feature " << f;
    EXPECT_EQ(point.features(f).score().level(), v1::DRIFT_LEVEL_OK) << "feature " << f;
  }
  CommandResult cli = CtlOk({"model", "drift", "classifier", "1", "--from", "-30m"});
  EXPECT_THAT(cli.out, HasSubstr("fleet (" + std::to_string(profile->samples()) + " samples)"));
  EXPECT_THAT(cli.out, HasSubstr("alert"));
  // /metrics scores against the same reference.
  const auto gauge = [&](const std::string& metrics, const std::string& feature) {
    return MetricValue(metrics, "edgefleet_drift_psi",
                       {{"model", "classifier"}, {"version", "1"}, {"feature", feature}});
  };
  std::string metrics;
  ASSERT_TRUE(WaitFor(
      [&] {
        metrics = server_->Metrics();
        return gauge(metrics, "0").value_or(0) > 0.25;
      },
      kLongWait, 250ms))
      << metrics;
  for (const char* f : {"1", "2", "3"}) EXPECT_LT(gauge(metrics, f).value_or(1), 0.1) << f;

  // A second version without a reference gets its own, from its own windows. The pass that
  // made it came after all of version 1's later windows were stored: version 1's reference is
  // still the one made first.
  auto second = PushAndServe("classifier_v2.onnx", "2");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->reference().detail(), "pending, 0 of 4 windows");
  auto second_described = DriveUntilFleetReference("2", 100, kShift, 11);
  ASSERT_TRUE(second_described.has_value());
  EXPECT_EQ(second_described->reference().windows(), static_cast<uint64_t>(kWindowsNeeded));
  EXPECT_NE(second_described->reference().profile_sha256(), summary.profile_sha256());
  auto second_profile = RestReference("2", &status);
  ASSERT_TRUE(second_profile.has_value()) << status;
  EXPECT_TRUE(SomeWindowsMakeUp(*second_profile, StoredWindows("2"), kWindowsNeeded));
  EXPECT_GT(second_profile->features(0).min(), profile->features(0).min())
      << "version 2's reference saw only the shifted input";

  auto again = RestReference("1", &status);
  ASSERT_TRUE(again.has_value()) << status;
  EXPECT_EQ(again->SerializeAsString(), profile->SerializeAsString()) << "made once";
  auto described_again = RestVersion("1");
  ASSERT_TRUE(described_again.has_value());
  EXPECT_EQ(described_again->reference().SerializeAsString(), summary.SerializeAsString());
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM reference_profiles"), "2");
}

// An agent offline while it served sends its windows late: they start before every window the
// reference was made from, yet the reference stays the one made first.
TEST_F(FleetReferenceTest, WindowsArrivingLateFromAnOfflineAgentDoNotRemakeTheReference) {
  server_->set_extra_args(
      {"--fleet-reference-windows", "2", "--fleet-reference-interval-seconds", "1"});
  server_->Start();
  StartAgents(2);
  ASSERT_FALSE(HasFatalFailure());
  AgentHarness& cam2 = *agents_[1];
  ASSERT_TRUE(PushAndServe("classifier_v1.onnx", "1").has_value());

  // cam-2 serves while the server is away, then stops: what it saw waits in its outbox.
  const int device_port = server_->ports().device;
  ASSERT_TRUE(server_->Stop().has_value());
  ASSERT_EQ(SendRows(cam2, kRows, kShift, 1), kRows);
  const double cam2_done =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(cam2.Stop().has_value());
  server_->Start(device_port);

  // cam-1's windows make the reference (K = 2); they start after cam-2's traffic ended: cam-1
  // cuts a window (with requests or not) every 2 s, and once one ending later is in, the next
  // ones start later still.
  ASSERT_TRUE(WaitFor(
      [&] {
        return db_->QueryValue(
                   "SELECT count(*) FROM telemetry_windows WHERE device_id = 'cam-1' AND "
                   "window_end > to_timestamp(" +
                   std::to_string(cam2_done) + ")") != "0";
      },
      kLongWait, 100ms));
  ASSERT_TRUE(DriveUntilFleetReference("1", 100, 0, 2, {agents_[0].get()}).has_value());
  int status = 0;
  auto made = RestReference("1", &status);
  ASSERT_TRUE(made.has_value()) << status;
  EXPECT_EQ(made->windows(), 2u);
  EXPECT_TRUE(SomeWindowsMakeUp(*made, StoredWindows("1", "cam-1"), 2));

  // cam-2 back: its windows arrive, the first of them starting before any of cam-1's (a
  // reference made from the first windows now would hold it).
  cam2.Restart();
  std::vector<v1::TelemetryWindow> late;
  ASSERT_TRUE(WaitFor(
      [&] {
        late = StoredWindows("1", "cam-2");
        return !late.empty();
      },
      kLongWait, 100ms));
  const auto start = [](const v1::TelemetryWindow& w) {
    return std::make_pair(w.window_start().seconds(), w.window_start().nanos());
  };
  const auto earliest = [&](const std::vector<v1::TelemetryWindow>& windows) {
    auto first = std::make_pair(std::numeric_limits<int64_t>::max(), 0);
    for (const v1::TelemetryWindow& w : windows) first = std::min(first, start(w));
    return first;
  };
  EXPECT_LT(earliest(late), earliest(StoredWindows("1", "cam-1")));

  // A later pass (the one that makes version 2's reference) leaves version 1's as it was.
  ASSERT_TRUE(PushAndServe("classifier_v2.onnx", "2").has_value());
  ASSERT_TRUE(DriveUntilFleetReference("2", 100, 0, 3).has_value());
  auto again = RestReference("1", &status);
  ASSERT_TRUE(again.has_value()) << status;
  EXPECT_EQ(again->SerializeAsString(), made->SerializeAsString()) << "made once";
}

}  // namespace
}  // namespace edgefleet::test
