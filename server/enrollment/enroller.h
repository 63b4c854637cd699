// Enrollment: a device trades an operator-issued token and a CSR for a client certificate
// signed by the device CA, and learns the CA and release root key it must pin.
#pragma once

#include <chrono>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/certificate_authority.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/device_repo.h"

namespace edgefleet::server {

// Validates a device id: 1-63 chars of [a-z0-9._-], starting with a letter or digit.
absl::Status ValidateDeviceId(std::string_view device_id);

class Enroller {
 public:
  Enroller(Transactor& db, DeviceStore& devices, const crypto::CertificateAuthority& ca,
           std::string release_public_key_pem, const Clock& clock,
           std::chrono::seconds certificate_validity);

  // InvalidArgument for malformed input, Unauthenticated/PermissionDenied/ResourceExhausted for
  // token problems, AlreadyExists for an active device id no operator allowed to rekey,
  // FailedPrecondition for a decommissioned device. Every attempt is audited; a refused one
  // spends no token use.
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);

  // A certificate for the new key in `csr_pem` of `device_id`, who proved its current key by
  // mutual TLS. It becomes the device's certificate when first used (DeviceRepo).
  // InvalidArgument when the CSR does not name the device.
  absl::StatusOr<v1::RenewCertificateResponse> Renew(const std::string& device_id,
                                                     const std::string& csr_pem);

 private:
  absl::StatusOr<v1::EnrollResponse> TryEnroll(const v1::EnrollRequest& request);
  // Checks that the CSR names `device_id` and signs it.
  absl::StatusOr<DeviceStore::IssuedCertificate> Issue(const std::string& device_id,
                                                       const std::string& csr_pem, int64_t now);

  Transactor& db_;
  DeviceStore& devices_;
  const crypto::CertificateAuthority& ca_;
  std::string release_public_key_pem_;
  const Clock& clock_;
  std::chrono::seconds certificate_validity_;
};

}  // namespace edgefleet::server
