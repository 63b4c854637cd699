// Trust on the device API through real processes: an active device id cannot be taken over with
// another token (only after an operator's rekey), certificates are renewed before they expire
// and an expired one is named as such, devices fetch only what was released to them, device text
// cannot forge server log lines, and server trouble reaches devices only as a generic error.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "edgefleet/v1/device.grpc.pb.h"
#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int64_t ToUnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class DeviceTrustTest : public IntegrationTest {
 protected:
  // A second agent process claiming `device_id`, in its own directory.
  AgentHarness& AddImpostor(const std::string& device_id) {
    agents_.push_back(
        std::make_unique<AgentHarness>(BinDir(), tmp_.Sub("impostor-" + device_id), device_id));
    return *agents_.back();
  }

  // The device API as `agent` (its key and certificate as they are on disk now).
  std::unique_ptr<v1::DeviceService::Stub> DeviceStubAs(const AgentHarness& agent) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadWhole(agent.state_dir() + "/ca.pem");
    tls.pem_cert_chain = ReadWhole(agent.state_dir() + "/cert.pem");
    tls.pem_private_key = ReadWhole(agent.state_dir() + "/key.pem");
    return v1::DeviceService::NewStub(
        grpc::CreateChannel(server_->device_address(), grpc::SslCredentials(tls)));
  }

  static void Deadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }

  int64_t LastSeen(const std::string& device_id) {
    v1::Device device;
    if (!server_->GetDevice(device_id, &device).ok()) return 0;
    return device.last_seen().seconds();
  }

  // Runs edgefleetctl against this test's server; returns its exit code.
  int Ctl(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--server",
                                    "127.0.0.1:" + std::to_string(server_->ports().admin_grpc)};
    all.insert(all.end(), args.begin(), args.end());
    Process ctl;
    std::filesystem::create_directories(tmp_.Sub("ctl"));
    ctl.Spawn(BinDir() + "/edgefleetctl", all, {{"EDGEFLEET_TOKEN", server_->admin_token()}},
              tmp_.Sub("ctl") + "/ctl.log");
    return ctl.Wait(kLongWait).value_or(-1);
  }
};

TEST_F(DeviceTrustTest, AnotherTokenCannotTakeOverAnActiveDeviceUntilAnOperatorRekeysIt) {
  server_->Start();
  AgentHarness& a = StartAgent("dev-a", NewEnrollmentToken(1, {{"site", "it"}}));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(WaitFor([&] { return a.Enrolled(); }, kLongWait));

  v1::EnrollmentToken second;
  ASSERT_TRUE(server_->CreateEnrollmentToken(1, {{"site", "attacker"}}, &second).ok());
  AgentHarness& impostor = AddImpostor("dev-a");
  impostor.Start(server_->device_address(), server_->ca_file(), second.token());
  ASSERT_TRUE(
      WaitFor([&] { return impostor.LogText().find("already enrolled") != std::string::npos; },
              kLongWait, 100ms))
      << impostor.LogText();
  EXPECT_FALSE(impostor.Enrolled());
  EXPECT_EQ(
      db_->QueryValue("SELECT uses FROM enrollment_tokens WHERE id = '" + second.token_id() + "'"),
      "0")
      << "a refused enrollment must not spend a token use";
  EXPECT_NE(db_->QueryValue("SELECT count(*) FROM audit_log WHERE action = "
                            "'device.enroll.refused' AND detail->>'device_id' = 'dev-a' AND "
                            "detail->>'token_id' = '" +
                            second.token_id() + "' AND detail->>'code' = 'ALREADY_EXISTS'"),
            "0");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM audit_log WHERE action = 'device.enroll' AND "
                            "detail->>'device_id' = 'dev-a'"),
            "1");

  // The real device keeps working and keeps its labels.
  const int64_t seen = LastSeen("dev-a");
  EXPECT_TRUE(WaitFor([&] { return LastSeen("dev-a") > seen; }, kLongWait, 200ms))
      << "dev-a should keep checking in";
  v1::Device device;
  ASSERT_TRUE(server_->GetDevice("dev-a", &device).ok());
  EXPECT_EQ(device.labels().at("site"), "it");

  // The operator allows one new enrollment: the waiting enrollment goes through, the old
  // certificate stops working.
  ASSERT_EQ(Ctl({"device", "rekey", "dev-a", "--ttl", "10m"}), 0)
      << ReadWhole(tmp_.Sub("ctl") + "/ctl.log");
  ASSERT_TRUE(WaitFor([&] { return impostor.Enrolled(); }, kLongWait, 100ms)) << impostor.LogText();
  EXPECT_TRUE(WaitFor([&] { return a.LogText().find("has been replaced") != std::string::npos; },
                      kLongWait, 100ms))
      << "the old certificate must be refused after the rekeyed enrollment";
  EXPECT_EQ(db_->QueryValue("SELECT detail->>'result' FROM audit_log WHERE action = "
                            "'device.enroll' AND detail->>'token_id' = '" +
                            second.token_id() + "'"),
            "rekeyed");
  ASSERT_TRUE(server_->GetDevice("dev-a", &device).ok());
  EXPECT_EQ(device.labels().at("site"), "it") << "a rekey replaces the key, not the labels";
  // Only one enrollment was allowed.
  EXPECT_EQ(db_->QueryValue("SELECT rekey_allowed_until IS NULL FROM devices WHERE id = 'dev-a'"),
            "t");
}

// An enrollment the server counted but the agent did not finish recording (a crash between
// storing the certificate and recording its id) is resumed, not repeated: a repeat would now be
// refused as a takeover.
TEST_F(DeviceTrustTest, AgentResumesAnEnrollmentInterruptedAfterStoringItsCertificate) {
  server_->Start();
  AgentHarness& agent = StartAgent("dev-crash", NewEnrollmentToken(2));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(WaitFor([&] { return agent.Enrolled(); }, kLongWait));
  agent.Kill();
  std::filesystem::remove(agent.state_dir() + "/agent.db");
  const int64_t seen = LastSeen("dev-crash");
  agent.Restart();
  EXPECT_TRUE(WaitFor([&] { return LastSeen("dev-crash") > seen; }, kLongWait, 200ms))
      << agent.LogText();
  EXPECT_THAT(agent.LogText(), HasSubstr("resuming an interrupted enrollment"));
  EXPECT_THAT(agent.LogText(), Not(HasSubstr("already enrolled")));
}

TEST_F(DeviceTrustTest, AgentRenewsItsCertificateAndKeepsWorkingPastTheFirstOnesExpiry) {
  server_->set_extra_args({"--device-certificate-validity-seconds", "6"});
  server_->Start();
  AgentHarness& agent = StartAgent("dev-renew", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  const std::string first_serial =
      db_->QueryValue("SELECT certificate_serial FROM devices WHERE id = 'dev-renew'");
  const int64_t enrolled_at = LastSeen("dev-renew");

  // Renewed at two thirds of 6 s; after two renewals the first certificate is long expired.
  ASSERT_TRUE(WaitFor(
      [&] {
        return std::stoi(db_->QueryValue("SELECT count(*) FROM audit_log WHERE action = "
                                         "'device.certificate.renew'")) >= 2;
      },
      kLongWait, 200ms))
      << agent.LogText();
  EXPECT_TRUE(WaitFor([&] { return LastSeen("dev-renew") > enrolled_at + 8; }, kLongWait, 200ms))
      << "the agent should keep checking in after its first certificate expired";
  EXPECT_NE(db_->QueryValue("SELECT certificate_serial FROM devices WHERE id = 'dev-renew'"),
            first_serial);
  EXPECT_THAT(agent.LogText(), HasSubstr("certificate renewed"));
  EXPECT_THAT(agent.LogText(), Not(HasSubstr("certificate expired")));
}

TEST_F(DeviceTrustTest, ExpiredCertificateIsNamedAndAnOperatorRekeyLetsTheDeviceBack) {
  server_->set_extra_args({"--device-certificate-validity-seconds", "3"});
  server_->Start();
  AgentHarness& agent = StartAgent("dev-old", NewEnrollmentToken(2));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(WaitFor([&] { return agent.Enrolled(); }, kLongWait));
  agent.Stop();
  // Whatever certificate it holds now has expired 3 s after it was issued at the latest.
  const int64_t stopped_at = ToUnixNow();
  ASSERT_TRUE(WaitFor([&] { return ToUnixNow() > stopped_at + 4; }, 10s, 100ms));
  agent.Restart();
  ASSERT_TRUE(
      WaitFor([&] { return agent.LogText().find("certificate expired on") != std::string::npos; },
              kLongWait, 100ms))
      << agent.LogText();
  EXPECT_THAT(agent.LogText(), HasSubstr("re-enroll or ask the operator to rekey"));
  EXPECT_TRUE(WaitFor([&] { return agent.LogText().find("already enrolled") != std::string::npos; },
                      kLongWait, 100ms));

  ASSERT_EQ(Ctl({"device", "rekey", "dev-old"}), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        return db_->QueryValue(
                   "SELECT count(*) FROM audit_log WHERE action = 'device.enroll' "
                   "AND detail->>'result' = 'rekeyed'") == "1";
      },
      kLongWait, 200ms))
      << agent.LogText();
}

TEST_F(DeviceTrustTest, ADeviceFetchesOnlyArtifactsReleasedToIt) {
  server_->Start();
  AgentHarness& a = StartAgent("dev-a", NewEnrollmentToken(1, {{"group", "a"}}));
  AgentHarness& b = StartAgent("dev-b", NewEnrollmentToken(1, {{"group", "b"}}));
  ASSERT_TRUE(WaitForActiveDevices(2));
  v1::ModelVersion pushed;
  ASSERT_TRUE(
      server_->PushClassifier("classifier", "1", TestModel("classifier_v1.onnx"), &pushed).ok());
  v1::Deployment deployment;
  ASSERT_TRUE(server_->CreateDeployment("classifier", "1", "group=a", &deployment).ok());
  ASSERT_TRUE(WaitForServedVersion(a, "classifier", "1"));

  auto fetch = [&](const AgentHarness& as, const std::string& sha256) {
    auto stub = DeviceStubAs(as);
    grpc::ClientContext context;
    Deadline(&context);
    v1::FetchArtifactRequest request;
    request.set_artifact_sha256(sha256);
    auto reader = stub->FetchArtifact(&context, request);
    v1::ArtifactChunk chunk;
    uint64_t bytes = 0;
    while (reader->Read(&chunk)) bytes += chunk.data().size();
    grpc::Status status = reader->Finish();
    return std::make_pair(status, bytes);
  };
  auto [a_status, a_bytes] = fetch(a, pushed.artifact_sha256());
  EXPECT_TRUE(a_status.ok()) << a_status.error_message();
  EXPECT_EQ(a_bytes, pushed.size_bytes());

  auto [b_status, b_bytes] = fetch(b, pushed.artifact_sha256());
  EXPECT_EQ(b_status.error_code(), grpc::StatusCode::NOT_FOUND) << b_status.error_message();
  EXPECT_EQ(b_bytes, 0u);
  auto [unknown_status, unknown_bytes] = fetch(b, std::string(32, '\x42'));
  EXPECT_EQ(unknown_status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown_status.error_message(), b_status.error_message())
      << "a refusal must not tell whether the digest exists";
}

TEST_F(DeviceTrustTest, DeviceTextCannotForgeServerLogLines) {
  server_->Start();
  AgentHarness& a = StartAgent("dev-log", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(WaitFor([&] { return a.Enrolled(); }, kLongWait));
  a.Stop();

  const std::string forged =
      "2026-12-01T00:00:00.000 info [admin] model pushed model=evil version=6 sha256=00";
  v1::ReportEventRequest request;
  v1::UpdateEvent* event = request.add_events();
  event->set_model_name("classifier");
  event->set_version("9");
  event->set_kind(v1::UPDATE_EVENT_KIND_FAILED);
  event->set_reason(v1::FAILURE_REASON_LOAD);
  event->set_detail("boom\n" + forged + "\r\x1b[2J\\");
  grpc::ClientContext context;
  Deadline(&context);
  v1::ReportEventResponse response;
  grpc::Status status = DeviceStubAs(a)->ReportEvent(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_TRUE(WaitFor([&] { return server_->LogText().find("boom") != std::string::npos; },
                      kLongWait, 100ms));
  const std::string log = server_->LogText();
  EXPECT_THAT(log, HasSubstr("detail=boom\\n" + forged + "\\r\\x1b[2J\\\\"));
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_NE(line.rfind("2026-12-01T00:00:00.000", 0), 0u) << "forged line: " << line;
  }
}

TEST_F(DeviceTrustTest, DevicesAreNotToldAboutTheDatabaseDuringAnOutage) {
  server_->Start();
  AgentHarness& a = StartAgent("dev-db", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(WaitFor([&] { return a.Enrolled(); }, kLongWait));
  a.Stop();

  db_->ExecOnServer("ALTER DATABASE " + db_->name() + " ALLOW_CONNECTIONS false");
  db_->ExecOnServer("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                    db_->name() + "'");
  grpc::ClientContext context;
  Deadline(&context);
  v1::CheckInResponse response;
  grpc::Status status = DeviceStubAs(a)->CheckIn(&context, v1::CheckInRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(status.error_message(), "server temporarily unavailable");
  EXPECT_THAT(server_->LogText(), HasSubstr(db_->name()))
      << "the real error is logged on the server";
  server_->Kill();
  db_->ExecOnServer("ALTER DATABASE " + db_->name() + " ALLOW_CONNECTIONS true");
}

}  // namespace
}  // namespace edgefleet::test
