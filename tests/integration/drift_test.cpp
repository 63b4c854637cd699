// Drift through the operator's path: a version pushed with a reference sample
// (`edgefleetctl model push --reference`), local Predict traffic on a real agent shifted in one
// feature, and the drift read back over REST, from `edgefleetctl model drift` and from /metrics:
// the shifted feature's PSI is over the alert threshold from at most two windows of traffic,
// the others stay under the warn threshold, and no metric carries a device id.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <random>

#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "tests/integration/integration_fixture.h"
#include "tests/support/npy_file.h"

namespace edgefleet::test {
namespace {

constexpr int kFeatures = 4;
constexpr size_t kReferenceRows = 5000;
constexpr int kRequests = 1500;  // over the 1,000 samples a drift score needs
constexpr double kShift = 2.0;   // feature 0 moves by two standard deviations

// Rows of kFeatures standard-normal features; feature 0 shifted by `shift`.
std::vector<float> NormalRows(size_t rows, double shift, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> values;
  values.reserve(rows * kFeatures);
  for (size_t r = 0; r < rows; ++r) {
    for (int f = 0; f < kFeatures; ++f) {
      values.push_back(normal(rng) + static_cast<float>(f == 0 ? shift : 0));
    }
  }
  return values;
}

class DriftTest : public IntegrationTest {
 protected:
  std::optional<v1::ModelDrift> RestDrift() {
    auto res = server_->Http()->Get("/v1/models/classifier/versions/1/drift?from=-30m",
                                    server_->AuthHeaders());
    if (!res || res->status != 200) return std::nullopt;
    v1::ModelDrift drift;
    if (!google::protobuf::util::JsonStringToMessage(res->body, &drift).ok()) return std::nullopt;
    return drift;
  }
};

TEST_F(DriftTest, AShiftedFeatureAlertsInRestAndMetricsWhileTheOthersStayQuiet) {
  server_->set_extra_args({"--telemetry-rollup-interval-seconds", "1"});
  server_->Start();
  AgentHarness& agent = AddAgent("cam-1");
  agent.set_extra_args({"--telemetry-interval-seconds", "3"});
  agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));

  const std::string sample = tmp_.Sub("reference.npy");
  WriteNpy(sample, {static_cast<int64_t>(kReferenceRows), kFeatures},
           NormalRows(kReferenceRows, 0, 1));
  CommandResult push =
      server_->Ctl({"model", "push", "classifier", TestModel("classifier_v1.onnx"), "--version",
                    "1", "--input", "input:1x4", "--output", "probs:1x3", "--reference", sample});
  ASSERT_EQ(push.exit_code, 0) << push.err << push.out;
  CommandResult deploy = server_->Ctl({"deploy", "create", "classifier", "1"});
  ASSERT_EQ(deploy.exit_code, 0) << deploy.err << deploy.out;
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));

  // The field: feature 0 shifted, the others as in the reference.
  const std::vector<float> field = NormalRows(kRequests, kShift, 2);
  auto stub = agent.NewInferenceStub();
  for (int i = 0; i < kRequests; ++i) {
    v1::PredictRequest request;
    request.set_model_name("classifier");
    v1::Tensor* input = request.add_inputs();
    *input = Expected("classifier_v1.onnx").inputs.at(0);
    input->clear_data();
    for (int f = 0; f < kFeatures; ++f) input->add_data(field[i * kFeatures + f]);
    v1::PredictResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    ASSERT_TRUE(stub->Predict(&context, request, &response).ok()) << "request " << i;
  }

  // REST: the drift has numbers once the traffic's windows are rolled up.
  std::optional<v1::ModelDrift> drift;
  ASSERT_TRUE(WaitFor(
      [&] {
        drift = RestDrift();
        return drift.has_value() && drift->points_size() == 1 &&
               drift->points(0).features_size() == kFeatures &&
               drift->points(0).features(0).score().current_samples() >= kRequests;
      },
      kLongWait, 500ms))
      << (drift.has_value() ? drift->DebugString() : "no answer");
  const v1::DriftPoint& point = drift->points(0);
  EXPECT_EQ(drift->reference_source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(drift->reference_samples(), kReferenceRows);
  EXPECT_EQ(point.features(0).score().level(), v1::DRIFT_LEVEL_ALERT);
  EXPECT_GT(point.features(0).score().psi(), 0.25);
  for (int f = 1; f < kFeatures; ++f) {
    EXPECT_LT(point.features(f).score().psi(), 0.1) << "feature " << f;
    EXPECT_EQ(point.features(f).score().level(), v1::DRIFT_LEVEL_OK) << "feature " << f;
  }
  // Within two windows: the traffic that scored it sits in at most two of the agent's windows.
  EXPECT_LE(std::stoi(db_->QueryValue(
                "SELECT count(*) FROM telemetry_windows WHERE model_name = 'classifier' AND "
                "request_count > 0")),
            2);

  // The CLI shows the same.
  CommandResult cli = server_->Ctl({"model", "drift", "classifier", "1", "--from", "-30m"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_NE(cli.out.find("alert"), std::string::npos) << cli.out;
  EXPECT_NE(cli.out.find("uploaded (5000 samples)"), std::string::npos) << cli.out;

  // /metrics: the gauges per feature, by model and version only.
  std::string metrics;
  ASSERT_TRUE(WaitFor(
      [&] {
        metrics = server_->Metrics();
        return MetricValue(metrics, "edgefleet_drift_psi", {{"feature", "0"}}).has_value();
      },
      kLongWait, 500ms));
  const std::map<std::string, std::string> version{{"model", "classifier"}, {"version", "1"}};
  auto labels = [&](const std::string& feature) {
    auto l = version;
    l["feature"] = feature;
    return l;
  };
  EXPECT_GT(MetricValue(metrics, "edgefleet_drift_psi", labels("0")).value_or(0), 0.25);
  for (const char* f : {"1", "2", "3"}) {
    EXPECT_LT(MetricValue(metrics, "edgefleet_drift_psi", labels(f)).value_or(1), 0.1) << f;
  }
  EXPECT_EQ(MetricValue(metrics, "edgefleet_drift_alert_threshold", {{"model", "classifier"}}),
            0.25);
  EXPECT_EQ(metrics.find("cam-1"), std::string::npos) << "no device id in any metric";
}

TEST_F(DriftTest, ThresholdsSetOverRestJudgeTheNextReadAndBadOnesAre400) {
  server_->Start();
  v1::ModelVersion pushed;
  ASSERT_EQ(server_->PushClassifier("classifier", "1", TestModel("classifier_v1.onnx"), &pushed)
                .error_code(),
            grpc::StatusCode::OK);
  auto http = server_->Http();
  auto bad = http->Post("/v1/models/classifier/drift-thresholds", server_->AuthHeaders(),
                        R"({"warn": 0.5, "alert": 0.2})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("alert must be above warn"), std::string::npos) << bad->body;
  auto unknown = http->Post("/v1/models/nope/drift-thresholds", server_->AuthHeaders(),
                            R"({"warn": 0.1, "alert": 0.2})", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto set = http->Post("/v1/models/classifier/drift-thresholds", server_->AuthHeaders(),
                        R"({"warn": 0.2, "alert": 0.4, "minSamples": 500})", "application/json");
  ASSERT_TRUE(set);
  ASSERT_EQ(set->status, 200) << set->body;

  auto drift = http->Get("/v1/models/classifier/versions/1/drift", server_->AuthHeaders());
  ASSERT_TRUE(drift);
  ASSERT_EQ(drift->status, 200) << drift->body;
  v1::ModelDrift parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(drift->body, &parsed).ok());
  EXPECT_EQ(parsed.thresholds().warn(), 0.2);
  EXPECT_EQ(parsed.thresholds().alert(), 0.4);
  EXPECT_EQ(parsed.thresholds().min_samples(), 500u);
  EXPECT_FALSE(parsed.thresholds().is_default());

  auto bad_range =
      http->Get("/v1/models/classifier/versions/1/drift?from=-1h&to=-2h", server_->AuthHeaders());
  ASSERT_TRUE(bad_range);
  EXPECT_EQ(bad_range->status, 400);
  EXPECT_NE(bad_range->body.find("must be before to"), std::string::npos) << bad_range->body;
}

}  // namespace
}  // namespace edgefleet::test
