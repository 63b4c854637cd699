#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "common/crypto/certificate_authority.h"

namespace edgefleet::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr std::chrono::seconds kDay{24 * 3600};
constexpr int64_t kNow = 1'750'000'000;  // fixed "now" (June 2025) for issued certificates

std::unique_ptr<CertificateAuthority> NewCa(std::string_view name,
                                            KeyAndCertificate* out = nullptr) {
  absl::StatusOr<KeyAndCertificate> ca = CreateSelfSignedCa(name, 3650 * kDay);
  EXPECT_TRUE(ca.ok()) << ca.status();
  if (out != nullptr) *out = *ca;
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> loaded =
      CertificateAuthority::Load(ca->certificate_pem, ca->private_key_pem);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *std::move(loaded);
}

int64_t WallNow() { return static_cast<int64_t>(std::time(nullptr)); }

TEST(X509Test, CaIssuesClientCertificateThatVerifiesOnlyAgainstIt) {
  auto ca = NewCa("edgefleet device CA");
  auto other_ca = NewCa("someone else's CA");
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-42");
  ASSERT_TRUE(device.ok()) << device.status();

  absl::StatusOr<std::string> cert =
      ca->SignClientCsr(device->csr_pem, "device-42", 30 * kDay, WallNow());
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<CertificateInfo> info = ParseCertificate(*cert);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "device-42");
  EXPECT_FALSE(info->is_ca);

  EXPECT_TRUE(VerifyIssuedBy(*cert, ca->CertificatePem()).ok());
  absl::Status wrong = VerifyIssuedBy(*cert, other_ca->CertificatePem());
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong.message(), HasSubstr("issuer"));
}

TEST(X509Test, CsrWithUnexpectedCommonNameIsRefused) {
  auto ca = NewCa("ca");
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-1");
  ASSERT_TRUE(device.ok());
  absl::StatusOr<std::string> cn = CsrCommonName(device->csr_pem);
  ASSERT_TRUE(cn.ok()) << cn.status();
  EXPECT_EQ(*cn, "device-1");

  // A device enrolled as device-2 must not obtain a certificate naming device-1.
  absl::StatusOr<std::string> cert = ca->SignClientCsr(device->csr_pem, "device-2", kDay, kNow);
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cert.status().message(), HasSubstr("device-1"));
}

TEST(X509Test, CsrWithBrokenSelfSignatureOrGarbageIsRefused) {
  auto ca = NewCa("ca");
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-1");
  ASSERT_TRUE(device.ok());
  // Re-encode the CSR with the last byte of its signature changed.
  std::vector<std::string> lines = absl::StrSplit(device->csr_pem, '\n', absl::SkipEmpty());
  std::string body;
  for (size_t i = 1; i + 1 < lines.size(); ++i) body += lines[i];
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(body, &der));
  der.back() = static_cast<char>(der.back() ^ 0x01);
  const std::string tampered = "-----BEGIN CERTIFICATE REQUEST-----\n" + absl::Base64Escape(der) +
                               "\n-----END CERTIFICATE REQUEST-----\n";

  EXPECT_EQ(CsrCommonName(tampered).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ca->SignClientCsr(tampered, "device-1", kDay, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CsrCommonName("not a csr").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ca->SignClientCsr("", "device-1", kDay, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, ServerCertificateCarriesIpAndDnsSans) {
  auto ca = NewCa("ca");
  absl::StatusOr<KeyAndCertificate> server = ca->IssueServerCertificate(
      "fleet.example.com", {"fleet.example.com", "localhost", "127.0.0.1", "::1", "[fe80::1]"},
      90 * kDay, WallNow());
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<CertificateInfo> info = ParseCertificate(server->certificate_pem);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "fleet.example.com");
  EXPECT_THAT(info->dns_names, ElementsAre("fleet.example.com", "localhost"));
  EXPECT_THAT(info->ip_addresses, UnorderedElementsAre("127.0.0.1", "::1", "fe80::1"));
  EXPECT_FALSE(info->is_ca);
  EXPECT_TRUE(VerifyIssuedBy(server->certificate_pem, ca->CertificatePem()).ok());

  EXPECT_EQ(ca->IssueServerCertificate("x", {"bad host/name"}, kDay, kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, ParseCertificateReportsNamesValidityAndSerial) {
  absl::StatusOr<KeyAndCertificate> ca = CreateSelfSignedCa("root", 10 * kDay, kNow);
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<CertificateInfo> info = ParseCertificate(ca->certificate_pem);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "root");
  EXPECT_TRUE(info->is_ca);
  // notBefore is backdated for clock skew; notAfter is exactly now + validity.
  EXPECT_EQ(info->not_before_unix, kNow - kClockSkewAllowance.count());
  EXPECT_EQ(info->not_after_unix, kNow + 10 * kDay.count());
  EXPECT_EQ(info->serial_hex.size(), 32u);  // 128-bit serial

  auto loaded = CertificateAuthority::Load(ca->certificate_pem, ca->private_key_pem);
  ASSERT_TRUE(loaded.ok());
  absl::StatusOr<KeyAndCsr> a = GenerateKeyAndCsr("a");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<std::string> first = (*loaded)->SignClientCsr(a->csr_pem, "a", kDay, kNow);
  absl::StatusOr<std::string> second = (*loaded)->SignClientCsr(a->csr_pem, "a", kDay, kNow);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(ParseCertificate(*first)->serial_hex, ParseCertificate(*second)->serial_hex);

  EXPECT_EQ(ParseCertificate("garbage").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, VerificationHonoursValidityWindow) {
  auto ca = NewCa("ca");
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-1");
  ASSERT_TRUE(device.ok());
  const int64_t issued_at = WallNow();
  absl::StatusOr<std::string> cert =
      ca->SignClientCsr(device->csr_pem, "device-1", kDay, issued_at);
  ASSERT_TRUE(cert.ok());
  // A device whose clock is a minute behind still accepts the fresh certificate.
  EXPECT_TRUE(VerifyIssuedBy(*cert, ca->CertificatePem(), issued_at - 60).ok());
  EXPECT_TRUE(VerifyIssuedBy(*cert, ca->CertificatePem(), issued_at + kDay.count() - 1).ok());
  absl::Status expired = VerifyIssuedBy(*cert, ca->CertificatePem(), issued_at + 2 * kDay.count());
  EXPECT_EQ(expired.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(expired.message(), HasSubstr("expired"));
  EXPECT_EQ(
      ca->SignClientCsr(device->csr_pem, "device-1", std::chrono::seconds(0), kNow).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, LoadRefusesMismatchedKeyNonCaAndGarbage) {
  KeyAndCertificate ca_pems;
  auto ca = NewCa("ca", &ca_pems);
  absl::StatusOr<KeyAndCertificate> other = CreateSelfSignedCa("other", kDay);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(
      CertificateAuthority::Load(ca_pems.certificate_pem, other->private_key_pem).status().code(),
      absl::StatusCode::kInvalidArgument);

  absl::StatusOr<KeyAndCertificate> server =
      ca->IssueServerCertificate("srv", {"localhost"}, kDay, WallNow());
  ASSERT_TRUE(server.ok());
  // A leaf certificate with its own key must not be usable to issue certificates.
  absl::Status leaf =
      CertificateAuthority::Load(server->certificate_pem, server->private_key_pem).status();
  EXPECT_EQ(leaf.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(leaf.message(), HasSubstr("CA"));

  EXPECT_EQ(CertificateAuthority::Load("junk", ca_pems.private_key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CertificateAuthority::Load(ca_pems.certificate_pem, "junk").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, OpenSslCommandLineVerifiesIssuedCertificates) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  std::string dir = ::testing::TempDir() + "/x509_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  auto ca = NewCa("edgefleet device CA");
  auto other_ca = NewCa("other CA");
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-7");
  ASSERT_TRUE(device.ok());
  absl::StatusOr<std::string> client =
      ca->SignClientCsr(device->csr_pem, "device-7", kDay, WallNow());
  absl::StatusOr<KeyAndCertificate> server =
      ca->IssueServerCertificate("server", {"127.0.0.1"}, kDay, WallNow());
  ASSERT_TRUE(client.ok() && server.ok());
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(dir + "/" + name) << data;
    return dir + "/" + name;
  };
  const std::string ca_file = write("ca.pem", ca->CertificatePem());
  const std::string other_file = write("other.pem", other_ca->CertificatePem());
  const std::string client_file = write("client.pem", *client);
  const std::string server_file = write("server.pem", server->certificate_pem);
  auto verify = [](const std::string& args) {
    return std::system(("openssl verify " + args + " > /dev/null 2>&1").c_str());
  };
  EXPECT_EQ(verify("-purpose sslclient -CAfile " + ca_file + " " + client_file), 0);
  EXPECT_EQ(verify("-purpose sslserver -CAfile " + ca_file + " " + server_file), 0);
  // The key usages are enforced: a client certificate cannot serve, nor a server one enroll.
  EXPECT_NE(verify("-purpose sslserver -CAfile " + ca_file + " " + client_file), 0);
  EXPECT_NE(verify("-purpose sslclient -CAfile " + ca_file + " " + server_file), 0);
  EXPECT_NE(verify("-CAfile " + other_file + " " + client_file), 0);
  EXPECT_EQ(verify("-verify_ip 127.0.0.1 -CAfile " + ca_file + " " + server_file), 0);
}

}  // namespace
}  // namespace edgefleet::crypto
