#include "server/enrollment/enroller.h"

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
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

namespace {

// OK when the CSR is well-formed and names `device_id`.
absl::Status CsrName(const std::string& device_id, const std::string& csr_pem) {
  auto csr_name = crypto::CsrCommonName(csr_pem);
  if (!csr_name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("csr_pem: ", csr_name.status().message()));
  }
  if (*csr_name != device_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR names '", *csr_name, "' but the device id is '", device_id, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

Enroller::Enroller(Transactor& db, DeviceStore& devices, const crypto::CertificateAuthority& ca,
                   std::string release_public_key_pem, const Clock& clock,
                   std::chrono::seconds certificate_validity)
    : db_(db),
      devices_(devices),
      ca_(ca),
      release_public_key_pem_(std::move(release_public_key_pem)),
      clock_(clock),
      certificate_validity_(certificate_validity) {}

absl::StatusOr<v1::EnrollResponse> Enroller::Enroll(const v1::EnrollRequest& request) {
  auto response = TryEnroll(request);
  if (!response.ok()) {
    auto s = db_.Transact("record refused enrollment", [&](Tx& tx) {
      return devices_.RecordRefusedEnrollment(tx, crypto::Sha256Bytes(request.enrollment_token()),
                                              request.device_id(), response.status());
    });
    if (!s.ok()) {
      Logger("enrollment")->error("cannot audit a refused enrollment: {}", s.ToString());
    }
  }
  return response;
}

absl::StatusOr<v1::EnrollResponse> Enroller::TryEnroll(const v1::EnrollRequest& request) {
  if (request.enrollment_token().empty()) {
    return absl::InvalidArgumentError("enrollment_token is required");
  }
  if (auto s = ValidateDeviceId(request.device_id()); !s.ok()) return s;
  // Checked before the token so that a wrong CSR spends nothing; the device's state is only
  // looked at once the token is accepted, so that a caller without one learns nothing about it.
  if (auto name = CsrName(request.device_id(), request.csr_pem()); !name.ok()) return name;
  const int64_t now = ToUnixSeconds(clock_.Now());
  // One transaction: the token use, the device row and the audit row commit together.
  auto enrollment = db_.Transact("enroll device", [&](Tx& tx) {
    return devices_.EnrollWithToken(
        tx,
        {crypto::Sha256Bytes(request.enrollment_token()), request.device_id(), request.inventory(),
         now},
        [&] { return Issue(request.device_id(), request.csr_pem(), now); });
  });
  if (!enrollment.ok()) return enrollment.status();

  v1::EnrollResponse response;
  response.set_device_id(enrollment->device.device_id());
  response.set_certificate_pem(enrollment->certificate.pem);
  response.set_ca_certificate_pem(ca_.CertificatePem());
  response.set_release_root_public_key_pem(release_public_key_pem_);
  response.mutable_labels()->insert(enrollment->device.labels().begin(),
                                    enrollment->device.labels().end());
  return response;
}

absl::StatusOr<v1::RenewCertificateResponse> Enroller::Renew(const std::string& device_id,
                                                             const std::string& csr_pem) {
  const int64_t now = ToUnixSeconds(clock_.Now());
  auto certificate = Issue(device_id, csr_pem, now);
  if (!certificate.ok()) return certificate.status();
  if (auto s = db_.Transact("record renewed certificate",
                            [&](Tx& tx) {
                              return devices_.SetPendingCertificate(tx, device_id,
                                                                    certificate->serial_hex);
                            });
      !s.ok()) {
    return s;
  }
  v1::RenewCertificateResponse response;
  response.set_certificate_pem(certificate->pem);
  response.mutable_not_after()->set_seconds(certificate->not_after_unix);
  return response;
}

absl::StatusOr<DeviceStore::IssuedCertificate> Enroller::Issue(const std::string& device_id,
                                                               const std::string& csr_pem,
                                                               int64_t now) {
  if (auto name = CsrName(device_id, csr_pem); !name.ok()) return name;
  auto certificate = ca_.SignClientCsr(csr_pem, device_id, certificate_validity_, now);
  if (!certificate.ok()) return certificate.status();
  auto info = crypto::ParseCertificate(*certificate);
  if (!info.ok()) return info.status();
  return DeviceStore::IssuedCertificate{*certificate, info->serial_hex, info->not_after_unix};
}

}  // namespace edgefleet::server
