// Reference profiles through the operator's path: `edgefleetctl model push --reference
// SAMPLE.npy` with a real server and agent. The agent's windows follow the uploaded profile (its
// digest, bins over its edges); REST pushes carry one as a multipart part; a bad profile
// registers nothing; GetReferenceProfile answers over REST.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "common/crypto/sha256.h"
#include "common/telemetry/reference_profile.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "tests/integration/integration_fixture.h"
#include "tests/support/npy_file.h"

namespace edgefleet::test {
namespace {

// 1,000 rows of the classifier's 4 features, spread around the sample input's values.
std::vector<float> SampleRows(size_t rows) {
  std::vector<float> values;
  for (size_t r = 0; r < rows; ++r) {
    for (int f = 0; f < 4; ++f) {
      values.push_back(static_cast<float>((r % 100) / 50.0 - 1.0 + f * 0.25));
    }
  }
  return values;
}

class ReferenceTest : public IntegrationTest {
 protected:
  std::string NpyPath(const std::string& name) { return tmp_.Sub(name); }

  std::optional<v1::TelemetryWindow> StoredWindowWithRequests(const std::string& version) {
    std::optional<v1::TelemetryWindow> window;
    WaitFor(
        [&] {
          const std::string hex = db_->QueryValue(
              "SELECT coalesce(encode(summary, 'hex'), '') FROM telemetry_windows WHERE "
              "model_name = 'classifier' AND version = '" +
              version + "' AND request_count > 0 ORDER BY window_start LIMIT 1");
          if (hex.empty()) return false;
          v1::TelemetryWindow w;
          if (!w.ParseFromString(crypto::FromHex(hex).value())) return false;
          window = w;
          return true;
        },
        kLongWait, 200ms);
    return window;
  }

  std::optional<v1::ReferenceProfile> RestReference(const std::string& version, int* status) {
    auto res = server_->Http()->Get("/v1/models/classifier/versions/" + version + "/reference",
                                    server_->AuthHeaders());
    *status = res ? res->status : 0;
    if (!res || res->status != 200) return std::nullopt;
    return ParseJson<v1::ReferenceProfile>(res->body);
  }
};

TEST_F(ReferenceTest, AnUploadedReferenceBinsTheAgentsWindowsByItsEdges) {
  server_->Start();
  AgentHarness& agent = StartAgent("cam-1", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  const std::string sample = NpyPath("sample.npy");
  WriteNpy(sample, {1000, 4}, SampleRows(1000));
  CommandResult pushed_out =
      CtlOk({"model", "push", "classifier", TestModel("classifier_v1.onnx"), "--version", "1",
             "--input", "input:1x4", "--output", "probs:1x3", "--reference", sample, "-o", "json"});
  auto pushed = ParseJson<v1::ModelVersion>(pushed_out.out);
  ASSERT_TRUE(pushed.has_value()) << pushed_out.out;
  EXPECT_EQ(pushed->reference().source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(pushed->reference().samples(), 1000u);
  EXPECT_EQ(pushed->reference().feature_count(), 4u);
  ASSERT_EQ(pushed->reference().profile_sha256().size(), 32u);

  // The whole profile over REST, its digest the one the summary names.
  int status = 0;
  auto profile = RestReference("1", &status);
  ASSERT_TRUE(profile.has_value()) << status;
  EXPECT_EQ(profile->profile_sha256(), pushed->reference().profile_sha256());
  EXPECT_EQ(telemetry::ProfileSha256(*profile), profile->profile_sha256());
  ASSERT_EQ(profile->features_size(), 4);
  EXPECT_EQ(profile->outputs().edges_size(), 2) << "one bin per class";
  RestReference("9", &status);
  EXPECT_EQ(status, 404);

  // `model get` says what the version's drift is measured against.
  CommandResult got = CtlOk({"model", "get", "classifier"});
  EXPECT_NE(got.out.find("uploaded, 1000 samples"), std::string::npos) << got.out;

  v1::Deployment deployment;
  ASSERT_TRUE(server_->CreateDeployment("classifier", "1", "", &deployment).ok());
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  for (int i = 0; i < 5; ++i) {
    v1::PredictResponse response;
    ASSERT_TRUE(PredictSample(agent, "classifier", &response).ok());
  }
  auto window = StoredWindowWithRequests("1");
  ASSERT_TRUE(window.has_value());
  EXPECT_EQ(window->profile_sha256(), profile->profile_sha256());
  ASSERT_EQ(window->features_size(), 4);
  for (int f = 0; f < 4; ++f) {
    const auto& bins = window->features(f).bins();
    EXPECT_EQ(bins.size(), profile->features(f).edges_size() + 1) << "feature " << f;
    uint64_t total = 0;
    for (uint64_t b : bins) total += b;
    EXPECT_GT(total, 0u) << "feature " << f;
  }
}

TEST_F(ReferenceTest, AVersionWithoutAReferenceIsBinnedByTheDefaultProfile) {
  server_->Start();
  AgentHarness& agent = StartAgent("cam-1", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  v1::Deployment deployment = PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  v1::PredictResponse response;
  ASSERT_TRUE(PredictSample(agent, "classifier", &response).ok());
  auto window = StoredWindowWithRequests("1");
  ASSERT_TRUE(window.has_value());
  v1::ModelVersion described;
  auto* in = described.add_inputs();
  in->add_shape(1);
  in->add_shape(4);
  auto* out = described.add_outputs();
  out->add_shape(1);
  out->add_shape(3);
  EXPECT_EQ(window->profile_sha256(), telemetry::DefaultProfile(described).profile_sha256());
  ASSERT_EQ(window->features_size(), 4);
  EXPECT_EQ(window->features(0).bins_size(), 143);
  // No reference yet: the summary says the fleet reference is pending.
  CommandResult got = CtlOk({"model", "get", "classifier", "-o", "json"});
  auto model = ParseJson<v1::Model>(got.out);
  ASSERT_TRUE(model.has_value()) << got.out;
  EXPECT_EQ(model->versions(0).reference().source(), v1::REFERENCE_SOURCE_UNSPECIFIED);
  EXPECT_NE(model->versions(0).reference().detail().find("pending"), std::string::npos);
  EXPECT_NE(model->versions(0).reference().detail().find("of 100 windows"), std::string::npos);
}

TEST_F(ReferenceTest, BadSamplesAndProfilesRegisterNothing) {
  server_->Start();
  const std::string fortran = NpyPath("fortran.npy");
  WriteNpy(fortran, {10, 4}, SampleRows(10), /*fortran=*/true);
  CommandResult r = server_->Ctl({"model", "push", "classifier", TestModel("classifier_v1.onnx"),
                                  "--version", "1", "--reference", fortran});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("Fortran order"), std::string::npos) << r.err;
  const std::string narrow = NpyPath("narrow.npy");
  WriteNpy(narrow, {10, 3}, std::vector<float>(30, 1.0f));
  r = server_->Ctl({"model", "push", "classifier", TestModel("classifier_v1.onnx"), "--version",
                    "1", "--reference", narrow});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not fit the model's first input"), std::string::npos) << r.err;

  // A profile the server refuses (gRPC): INVALID_ARGUMENT saying why, and no version.
  auto good =
      telemetry::ComputeProfile(std::vector<double>(40, 1.0), 4, std::vector<double>(10, 1.0), 3);
  ASSERT_TRUE(good.ok());
  v1::PushModelMetadata metadata;
  metadata.set_model_name("classifier");
  metadata.set_version("1");
  *metadata.mutable_reference() = *good;
  metadata.mutable_reference()->mutable_features(2)->add_edges(-5);
  std::ifstream file(TestModel("classifier_v1.onnx"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), {});
  v1::ModelVersion out;
  grpc::Status pushed = server_->PushModel(metadata, bytes, &out);
  EXPECT_EQ(pushed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(pushed.error_message().find("feature 2"), std::string::npos) << pushed.error_message();
  // Three features for a model of four.
  *metadata.mutable_reference() = *good;
  metadata.mutable_reference()->mutable_features()->RemoveLast();
  metadata.mutable_reference()->set_profile_sha256("");
  pushed = server_->PushModel(metadata, bytes, &out);
  EXPECT_EQ(pushed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(pushed.error_message().find("the model has 4"), std::string::npos)
      << pushed.error_message();
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM model_versions"), "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM reference_profiles"), "0");
}

TEST_F(ReferenceTest, RestPushCarriesTheReferenceAsAMultipartPart) {
  server_->Start();
  auto good = telemetry::ComputeProfile(std::vector<double>(4000, 0.5), 4,
                                        std::vector<double>(1000, 2.0), 3);
  ASSERT_TRUE(good.ok());
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(*good, &json).ok());
  std::ifstream file(TestModel("classifier_v1.onnx"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), {});
  const std::string path = "/v1/models/classifier/versions/{V}?input=input:1x4&output=probs:1x3";
  const auto push = [&](const std::string& version, const std::string& reference_json) {
    httplib::MultipartFormDataItems items{
        {"reference", reference_json, "", "application/json"},
        {"model", bytes, "model.onnx", "application/octet-stream"}};
    std::string p = path;
    p.replace(p.find("{V}"), 3, version);
    return server_->Http()->Post(p.c_str(), server_->AuthHeaders(), items);
  };

  auto bad_json = json;
  bad_json.replace(bad_json.find("\"samples\""), 9, "\"samplez\"");
  auto refused = push("1", bad_json);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400) << refused->body;
  v1::ReferenceProfile unsorted = *good;
  unsorted.mutable_outputs()->set_edges(0, 7);
  std::string unsorted_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(unsorted, &unsorted_json).ok());
  refused = push("1", unsorted_json);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400) << refused->body;
  EXPECT_NE(refused->body.find("strictly increasing"), std::string::npos) << refused->body;
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM model_versions"), "0");

  auto accepted = push("1", json);
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 200) << accepted->body;
  auto version = ParseJson<v1::ModelVersion>(accepted->body);
  ASSERT_TRUE(version.has_value());
  EXPECT_EQ(version->reference().source(), v1::REFERENCE_SOURCE_UPLOADED);
  EXPECT_EQ(version->reference().profile_sha256(), good->profile_sha256());
  int status = 0;
  auto stored = RestReference("1", &status);
  ASSERT_TRUE(stored.has_value()) << status;
  EXPECT_EQ(stored->SerializeAsString(), good->SerializeAsString());
}

}  // namespace
}  // namespace edgefleet::test
