#include "server/enrollment/enroller.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"

namespace edgefleet::server {

absl::Status ValidateDeviceId(std::string_view id) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("device id '", std::string(id), "' ", why));
  };
  if (id.empty() || id.size() > 63) return bad("must be 1 to 63 characters");
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return bad("may only contain [a-z0-9._-]");
  }
  if (id[0] == '.' || id[0] == '_' || id[0] == '-') return bad("must start with a letter or digit");
  return absl::OkStatus();
}

Enroller::Enroller(EnrollmentTokenRepo& tokens, DeviceRepo& devices,
                   const crypto::CertificateAuthority& ca, std::string release_public_key_pem,
                   const Clock& clock, std::chrono::seconds certificate_validity)
    : tokens_(tokens),
      devices_(devices),
      ca_(ca),
      release_public_key_pem_(std::move(release_public_key_pem)),
      clock_(clock),
      certificate_validity_(certificate_validity) {}

absl::StatusOr<v1::EnrollResponse> Enroller::Enroll(const v1::EnrollRequest& request) {
  if (request.enrollment_token().empty()) {
    return absl::InvalidArgumentError("enrollment_token is required");
  }
  if (auto s = ValidateDeviceId(request.device_id()); !s.ok()) return s;
  auto csr_name = crypto::CsrCommonName(request.csr_pem());
  if (!csr_name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("csr_pem: ", csr_name.status().message()));
  }
  if (*csr_name != request.device_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR names '", *csr_name, "' but device_id is '", request.device_id(), "'"));
  }
  // Refuse a decommissioned device before spending a token use on it.
  if (auto device = devices_.Get(request.device_id());
      device.ok() && device->status() == v1::DEVICE_STATUS_DECOMMISSIONED) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", request.device_id(), " is decommissioned"));
  }
  const int64_t now = ToUnixSeconds(clock_.Now());
  auto labels = tokens_.Consume(crypto::Sha256Bytes(request.enrollment_token()), now);
  if (!labels.ok()) return labels.status();

  auto certificate =
      ca_.SignClientCsr(request.csr_pem(), request.device_id(), certificate_validity_, now);
  if (!certificate.ok()) return certificate.status();
  auto info = crypto::ParseCertificate(*certificate);
  if (!info.ok()) return info.status();
  auto device =
      devices_.Enroll(request.device_id(), *labels, request.inventory(), info->serial_hex, now);
  if (!device.ok()) return device.status();

  v1::EnrollResponse response;
  response.set_device_id(device->device_id());
  response.set_certificate_pem(*certificate);
  response.set_ca_certificate_pem(ca_.CertificatePem());
  response.set_release_root_public_key_pem(release_public_key_pem_);
  response.mutable_labels()->insert(device->labels().begin(), device->labels().end());
  return response;
}

}  // namespace edgefleet::server
