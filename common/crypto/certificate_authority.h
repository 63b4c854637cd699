// X.509 device CA: issues mutual-TLS client certificates for enrolled devices and server
// certificates, with ECDSA P-256 keys and SHA-256 signatures, all exchanged as PEM text.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::crypto {

// notBefore is backdated by this much so that peers whose clocks are behind accept new certs:
// a device whose clock is a day slow still connects to a server whose certificate is new.
// Backdating costs nothing (notAfter bounds a certificate's life, counted from its issue).
inline constexpr std::chrono::seconds kClockSkewAllowance{2 * 24 * 3600};

struct KeyAndCertificate {
  std::string private_key_pem;  // PKCS#8
  std::string certificate_pem;
};

struct CertificateInfo {
  std::string common_name;
  std::string serial_hex;  // lowercase hex of the serial number bytes
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // textual form, e.g. "127.0.0.1", "::1"
  bool is_ca = false;
};

absl::StatusOr<KeyAndCertificate> CreateSelfSignedCa(std::string_view common_name,
                                                     std::chrono::seconds validity);
absl::StatusOr<KeyAndCertificate> CreateSelfSignedCa(std::string_view common_name,
                                                     std::chrono::seconds validity,
                                                     int64_t now_unix);

struct KeyAndCsr {
  std::string private_key_pem;  // PKCS#8
  std::string csr_pem;
};

// A new P-256 key and a CSR for it whose subject is CN=`common_name`.
absl::StatusOr<KeyAndCsr> GenerateKeyAndCsr(std::string_view common_name);

// The CSR's subject CN; InvalidArgument when unparsable or its self-signature fails.
absl::StatusOr<std::string> CsrCommonName(std::string_view csr_pem);

absl::StatusOr<CertificateInfo> ParseCertificate(std::string_view certificate_pem);

// Chain check with `ca_certificate_pem` as the only trust anchor, at the current time or at
// `now_unix`. PermissionDenied with the reason when it fails; InvalidArgument on bad PEM.
absl::Status VerifyIssuedBy(std::string_view certificate_pem, std::string_view ca_certificate_pem);
absl::Status VerifyIssuedBy(std::string_view certificate_pem, std::string_view ca_certificate_pem,
                            int64_t now_unix);

class CertificateAuthority {
 public:
  // InvalidArgument when either PEM does not parse, the certificate is not a CA, or the key
  // does not belong to the certificate.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Load(
      std::string_view ca_certificate_pem, std::string_view ca_private_key_pem);

  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Client certificate (extendedKeyUsage clientAuth, not a CA) for the CSR's key, subject
  // CN=`expected_common_name`, random 128-bit serial. InvalidArgument when the CSR's CN differs
  // from `expected_common_name`, its signature fails, or its key is not EC. Returns PEM.
  absl::StatusOr<std::string> SignClientCsr(std::string_view csr_pem,
                                            std::string_view expected_common_name,
                                            std::chrono::seconds validity, int64_t now_unix) const;

  // Server certificate (extendedKeyUsage serverAuth) for a new P-256 key. Each host that parses
  // as an IPv4/IPv6 address becomes an IP SAN, any other a DNS SAN.
  absl::StatusOr<KeyAndCertificate> IssueServerCertificate(std::string_view common_name,
                                                           const std::vector<std::string>& hosts,
                                                           std::chrono::seconds validity,
                                                           int64_t now_unix) const;

  const std::string& CertificatePem() const;

 private:
  struct Impl;
  explicit CertificateAuthority(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgefleet::crypto
