#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/crypto/certificate_authority.h"
#include "common/crypto/sha256.h"
#include "server/enrollment/enroller.h"
#include "server/enrollment/server_identity.h"
#include "server/store/database.h"
#include "server/store/enrollment_token_repo.h"
#include "tests/support/test_database.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("enrollment_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(ServerIdentityTest, CreatedOnFirstStartAndReusedAfterwards) {
  fs::path dir = FreshDir("identity");
  const int64_t now = 1'800'000'000;
  auto first = LoadOrCreateServerIdentity(dir.string(), {"localhost", "127.0.0.1"}, now);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);
  EXPECT_EQ(fs::status(dir / "keys" / "ca.key").permissions() & fs::perms::others_read,
            fs::perms::none);
  EXPECT_TRUE(
      crypto::VerifyIssuedBy(first->server_certificate_pem, first->ca_certificate_pem, now).ok());
  auto server_cert = crypto::ParseCertificate(first->server_certificate_pem);
  ASSERT_TRUE(server_cert.ok());
  EXPECT_EQ(server_cert->ip_addresses, std::vector<std::string>{"127.0.0.1"});

  auto second = LoadOrCreateServerIdentity(dir.string(), {"localhost", "127.0.0.1"}, now + 60);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->ca_certificate_pem, first->ca_certificate_pem);
  EXPECT_EQ(second->release_public_key_pem, first->release_public_key_pem);
  EXPECT_EQ(second->server_certificate_pem, first->server_certificate_pem);
}

TEST(ServerIdentityTest, HalfAKeyPairIsAnOperatorErrorNotSilentlyReplaced) {
  fs::path dir = FreshDir("half_pair");
  ASSERT_TRUE(LoadOrCreateServerIdentity(dir.string(), {"localhost"}, 1'800'000'000).ok());
  fs::remove(dir / "keys" / "release.key");
  auto again = LoadOrCreateServerIdentity(dir.string(), {"localhost"}, 1'800'000'000);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("release"), std::string::npos);
}

TEST(DeviceIdTest, AcceptsSimpleNamesAndRefusesOthers) {
  EXPECT_TRUE(ValidateDeviceId("cam-01.line_2").ok());
  for (const char* bad : {"", "-cam", "Cam", "cam 1", "cam/1", "../etc"}) {
    EXPECT_EQ(ValidateDeviceId(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateDeviceId(std::string(64, 'a')).ok());
}

class EnrollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto database = Database::Open({.url = db_.url()});
    ASSERT_TRUE(database.ok()) << database.status();
    database_ = *std::move(database);
    ASSERT_TRUE(database_->Migrate().ok());
    tokens_ = std::make_unique<EnrollmentTokenRepo>(*database_);
    devices_ = std::make_unique<DeviceRepo>(*database_);
    auto ca = crypto::CreateSelfSignedCa("test CA", std::chrono::hours(24 * 365 * 5));
    ASSERT_TRUE(ca.ok());
    ca_pem_ = ca->certificate_pem;
    auto authority = crypto::CertificateAuthority::Load(ca->certificate_pem, ca->private_key_pem);
    ASSERT_TRUE(authority.ok());
    ca_ = *std::move(authority);
    enroller_ = std::make_unique<Enroller>(*database_, *devices_, *ca_, "ROOT-KEY-PEM", clock_,
                                           std::chrono::hours(1));
    ASSERT_TRUE(database_
                    ->Transact("test",
                               [&](Tx& tx) {
                                 return tokens_->Create(
                                     tx, "tok1", crypto::Sha256Bytes("secret-token"), 2,
                                     ToUnixSeconds(clock_.Now()) + 3600, {{"site", "berlin"}}, "");
                               })
                    .ok());
    ASSERT_TRUE(database_
                    ->Transact("test",
                               [&](Tx& tx) {
                                 return tokens_->Create(tx, "tok2",
                                                        crypto::Sha256Bytes("other-token"), 2,
                                                        ToUnixSeconds(clock_.Now()) + 3600,
                                                        {{"site", "attacker"}}, "");
                               })
                    .ok());
  }

  v1::EnrollRequest Request(const std::string& device_id, const std::string& csr_name,
                            const std::string& token = "secret-token") {
    auto key = crypto::GenerateKeyAndCsr(csr_name);
    EXPECT_TRUE(key.ok());
    v1::EnrollRequest request;
    request.set_enrollment_token(token);
    request.set_device_id(device_id);
    request.set_csr_pem(key->csr_pem);
    request.mutable_inventory()->set_hardware("x86_64");
    return request;
  }

  test::TestDatabase db_;
  FakeClock clock_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<EnrollmentTokenRepo> tokens_;
  std::unique_ptr<DeviceRepo> devices_;
  std::string ca_pem_;
  std::unique_ptr<crypto::CertificateAuthority> ca_;
  std::unique_ptr<Enroller> enroller_;
};

TEST_F(EnrollerTest, IssuesACertificateNamingTheDeviceAndAppliesTokenLabels) {
  auto response = enroller_->Enroll(Request("cam-1", "cam-1"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->device_id(), "cam-1");
  EXPECT_EQ(response->ca_certificate_pem(), ca_pem_);
  EXPECT_EQ(response->release_root_public_key_pem(), "ROOT-KEY-PEM");
  EXPECT_EQ(response->labels().at("site"), "berlin");
  auto cert = crypto::ParseCertificate(response->certificate_pem());
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->common_name, "cam-1");
  EXPECT_FALSE(cert->is_ca);
  EXPECT_TRUE(
      crypto::VerifyIssuedBy(response->certificate_pem(), ca_pem_, ToUnixSeconds(clock_.Now()))
          .ok());
  auto device = devices_->Get("cam-1");
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->status(), v1::DEVICE_STATUS_ACTIVE);
  EXPECT_EQ(device->inventory().hardware(), "x86_64");
}

TEST_F(EnrollerTest, CsrForAnotherNameIsRefusedWithoutSpendingTheToken) {
  auto response = enroller_->Enroll(Request("cam-1", "cam-2"));
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(enroller_->Enroll(Request("cam-3", "cam-3")).ok());
  EXPECT_TRUE(enroller_->Enroll(Request("cam-4", "cam-4")).ok());  // both uses were still there
  EXPECT_EQ(enroller_->Enroll(Request("cam-5", "cam-5")).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(EnrollerTest, WrongTokenAndGarbageCsrAreRefused) {
  v1::EnrollRequest wrong_token = Request("cam-1", "cam-1");
  wrong_token.set_enrollment_token("guess");
  EXPECT_EQ(enroller_->Enroll(wrong_token).status().code(), absl::StatusCode::kUnauthenticated);
  v1::EnrollRequest garbage = Request("cam-1", "cam-1");
  garbage.set_csr_pem(
      "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
  EXPECT_EQ(enroller_->Enroll(garbage).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(devices_->Get("cam-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EnrollerTest, DecommissionedDeviceCannotEnrollAgain) {
  ASSERT_TRUE(enroller_->Enroll(Request("cam-1", "cam-1")).ok());
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-1"); })
          .ok());
  EXPECT_EQ(enroller_->Enroll(Request("cam-1", "cam-1")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(EnrollerTest, ActiveDeviceIsNotTakenOverByAnotherTokenAndEveryAttemptIsAudited) {
  auto first = enroller_->Enroll(Request("cam-1", "cam-1"));
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string serial = crypto::ParseCertificate(first->certificate_pem())->serial_hex;

  auto takeover = enroller_->Enroll(Request("cam-1", "cam-1", "other-token"));
  EXPECT_EQ(takeover.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(takeover.status().message()),
              HasSubstr("edgefleetctl device rekey cam-1"));
  EXPECT_EQ(db_.QueryValue("SELECT uses FROM enrollment_tokens WHERE id = 'tok2'"), "0")
      << "a refused enrollment spends no token use";
  EXPECT_EQ(db_.QueryValue("SELECT certificate_serial FROM devices WHERE id = 'cam-1'"), serial);
  EXPECT_EQ(devices_->Get("cam-1")->labels().at("site"), "berlin");
  EXPECT_TRUE(devices_->Identity("cam-1").ok());

  EXPECT_EQ(db_.QueryValue("SELECT detail->>'result' || ' ' || (detail->>'token_id') FROM "
                           "audit_log WHERE action = 'device.enroll'"),
            "enrolled tok1");
  EXPECT_EQ(db_.QueryValue("SELECT (detail->>'token_id') || ' ' || (detail->>'code') FROM "
                           "audit_log WHERE action = 'device.enroll.refused'"),
            "tok2 ALREADY_EXISTS");
  // Refusals before the token is known are audited too, with the text made printable.
  v1::EnrollRequest unknown = Request("cam-2", "cam-2", "guess");
  EXPECT_EQ(enroller_->Enroll(unknown).status().code(), absl::StatusCode::kUnauthenticated);
  v1::EnrollRequest bad_id = Request("cam-3", "cam-3");
  bad_id.set_device_id(std::string("x\n\0y", 4));
  EXPECT_EQ(enroller_->Enroll(bad_id).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = 'device.enroll.refused'"),
            "3");
  EXPECT_EQ(db_.QueryValue("SELECT actor FROM audit_log WHERE detail->>'code' = 'UNAUTHENTICATED'"),
            "enrollment-token:unknown");
}

TEST_F(EnrollerTest, RekeyAllowsExactlyOneNewEnrollmentWhichKeepsTheLabels) {
  ASSERT_TRUE(enroller_->Enroll(Request("cam-1", "cam-1")).ok());
  auto allow_rekey_for_a_minute = [&] {
    return database_->Transact("allow rekey", [&](Tx& tx) {
      return devices_->AllowRekey(tx, "cam-1", ToUnixSeconds(clock_.Now()) + 60);
    });
  };
  ASSERT_TRUE(allow_rekey_for_a_minute().ok());
  auto rekeyed = enroller_->Enroll(Request("cam-1", "cam-1", "other-token"));
  ASSERT_TRUE(rekeyed.ok()) << rekeyed.status();
  EXPECT_EQ(rekeyed->labels().at("site"), "berlin");
  EXPECT_EQ(db_.QueryValue("SELECT certificate_serial FROM devices WHERE id = 'cam-1'"),
            crypto::ParseCertificate(rekeyed->certificate_pem())->serial_hex);
  EXPECT_EQ(db_.QueryValue("SELECT detail->>'result' FROM audit_log WHERE action = "
                           "'device.enroll' AND detail->>'token_id' = 'tok2'"),
            "rekeyed");
  EXPECT_EQ(enroller_->Enroll(Request("cam-1", "cam-1", "other-token")).status().code(),
            absl::StatusCode::kAlreadyExists);

  // An allowance that expired is no allowance.
  ASSERT_TRUE(allow_rekey_for_a_minute().ok());
  clock_.Advance(std::chrono::seconds(61));
  EXPECT_EQ(enroller_->Enroll(Request("cam-1", "cam-1", "other-token")).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      database_->Transact("test", [&](Tx& tx) { return devices_->AllowRekey(tx, "ghost", 0); })
          .status()
          .code(),
      absl::StatusCode::kNotFound);
}

TEST_F(EnrollerTest, RenewedCertificateReplacesTheCurrentOneOnFirstUse) {
  auto enrolled = enroller_->Enroll(Request("cam-1", "cam-1"));
  ASSERT_TRUE(enrolled.ok());
  const std::string old_serial = crypto::ParseCertificate(enrolled->certificate_pem())->serial_hex;
  auto key = crypto::GenerateKeyAndCsr("cam-1");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(enroller_->Renew("cam-1", crypto::GenerateKeyAndCsr("cam-2")->csr_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto renewed = enroller_->Renew("cam-1", key->csr_pem);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  auto info = crypto::ParseCertificate(renewed->certificate_pem());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "cam-1");
  EXPECT_EQ(renewed->not_after().seconds(), info->not_after_unix);
  EXPECT_EQ(info->not_after_unix, ToUnixSeconds(clock_.Now()) + 3600);

  auto identity = devices_->Identity("cam-1");
  ASSERT_TRUE(identity.ok());
  EXPECT_EQ(identity->certificate_serial, old_serial) << "the old one works until the new is used";
  EXPECT_EQ(identity->pending_certificate_serial, info->serial_hex);
  EXPECT_TRUE(*database_->Transact(
      "test", [&](Tx& tx) { return devices_->PromoteCertificate(tx, "cam-1", info->serial_hex); }));
  EXPECT_FALSE(*database_->Transact(
      "test", [&](Tx& tx) { return devices_->PromoteCertificate(tx, "cam-1", info->serial_hex); }));
  identity = devices_->Identity("cam-1");
  EXPECT_EQ(identity->certificate_serial, info->serial_hex);
  EXPECT_EQ(identity->pending_certificate_serial, "");
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = "
                           "'device.certificate.renew'"),
            "1");
}

}  // namespace
}  // namespace edgefleet::server
