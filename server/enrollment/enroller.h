// Enrollment: a device trades an operator-issued token and a CSR for a client certificate
// signed by the device CA, and learns the CA and release root key it must pin.
#pragma once

#include <chrono>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/certificate_authority.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/device_repo.h"
#include "server/store/enrollment_token_repo.h"

namespace edgefleet::server {

// Validates a device id: 1-63 chars of [a-z0-9._-], starting with a letter or digit.
absl::Status ValidateDeviceId(std::string_view device_id);

class Enroller {
 public:
  Enroller(EnrollmentTokenRepo& tokens, DeviceRepo& devices, const crypto::CertificateAuthority& ca,
           std::string release_public_key_pem, const Clock& clock,
           std::chrono::seconds certificate_validity);

  // InvalidArgument for malformed input, Unauthenticated/PermissionDenied/ResourceExhausted for
  // token problems, FailedPrecondition for a decommissioned device.
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& request);

 private:
  EnrollmentTokenRepo& tokens_;
  DeviceRepo& devices_;
  const crypto::CertificateAuthority& ca_;
  std::string release_public_key_pem_;
  const Clock& clock_;
  std::chrono::seconds certificate_validity_;
};

}  // namespace edgefleet::server
