// The device API's cache of parsed client certificates: each certificate answers with its own
// common name and serial however many certificates came and went, and a bad one is refused.
#include "server/api/client_identity_cache.h"

#include <gtest/gtest.h>

#include "common/crypto/certificate_authority.h"

namespace edgefleet::server {
namespace {

class ClientIdentityCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    auto ca = crypto::CreateSelfSignedCa("test CA", std::chrono::hours(1));
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto loaded = crypto::CertificateAuthority::Load(ca->certificate_pem, ca->private_key_pem);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ca_ = *std::move(loaded);
  }

  std::string Certificate(const std::string& device) {
    auto key = crypto::GenerateKeyAndCsr(device);
    EXPECT_TRUE(key.ok()) << key.status();
    auto pem = ca_->SignClientCsr(key->csr_pem, device, std::chrono::hours(1), 1'800'000'000);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return *pem;
  }

  std::unique_ptr<crypto::CertificateAuthority> ca_;
};

TEST_F(ClientIdentityCacheTest, EachCertificateIsItsOwnDeviceAcrossEvictions) {
  ClientIdentityCache cache(/*capacity=*/2);
  std::vector<std::string> pems;
  for (int i = 0; i < 7; ++i) pems.push_back(Certificate("cam-" + std::to_string(i)));
  // Round robin over more certificates than the cache holds, twice, as a fleet's calls come.
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < pems.size(); ++i) {
      auto identity = cache.Get(pems[i]);
      ASSERT_TRUE(identity.ok()) << identity.status();
      auto parsed = crypto::ParseCertificate(pems[i]);
      ASSERT_TRUE(parsed.ok());
      EXPECT_EQ(identity->common_name, "cam-" + std::to_string(i));
      EXPECT_EQ(identity->serial_hex, parsed->serial_hex);
    }
  }
  // A device's renewed certificate (same name, new serial) answers with its own serial.
  const std::string renewed = Certificate("cam-0");
  auto first = cache.Get(pems[0]);
  auto second = cache.Get(renewed);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(second->common_name, "cam-0");
  EXPECT_NE(first->serial_hex, second->serial_hex);
}

TEST_F(ClientIdentityCacheTest, AnUnparsableCertificateIsAnErrorAndNotRemembered) {
  ClientIdentityCache cache;
  std::string pem = Certificate("cam-1");
  // Cut in the middle: the DER inside ends before its own length says (a flipped bit could
  // land in the signature, which parsing does not check).
  const std::string broken =
      pem.substr(0, pem.find('\n', pem.size() / 2) + 1) + "-----END CERTIFICATE-----\n";
  EXPECT_FALSE(cache.Get(broken).ok());
  EXPECT_FALSE(cache.Get(broken).ok()) << "a failed parse must not be cached as a success";
  EXPECT_FALSE(cache.Get("").ok());
  auto good = cache.Get(pem);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->common_name, "cam-1");
}

}  // namespace
}  // namespace edgefleet::server
