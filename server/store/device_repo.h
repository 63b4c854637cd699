// DeviceRepo is the device registry: enrollment, labels, status and check-in inventory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/core/labels.h"
#include "edgefleet/v1/types.pb.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

class DeviceRepo {
 public:
  explicit DeviceRepo(Database& db) : db_(db) {}

  // A new device becomes active with `labels`. An active device id is refused with
  // AlreadyExists unless an operator allowed a rekey (AllowRekey) that has not expired: then the
  // device keeps its labels and gets the new certificate serial and inventory, and the rekey is
  // used up. FailedPrecondition "device X is decommissioned" for a decommissioned one.
  absl::StatusOr<v1::Device> Enroll(const std::string& device_id, const Labels& labels,
                                    const v1::Inventory& inventory,
                                    const std::string& certificate_serial, int64_t now_unix);

  struct IssuedCertificate {
    std::string pem;
    std::string serial_hex;
    int64_t not_after_unix = 0;
  };
  // Called once the token and the device id have been accepted; its error aborts the enrollment.
  using CertificateIssuer = std::function<absl::StatusOr<IssuedCertificate>()>;
  struct EnrollmentAttempt {
    std::string token_hash;  // SHA-256 of the enrollment token's secret
    std::string device_id;
    v1::Inventory inventory;
    int64_t now_unix = 0;
  };
  struct Enrollment {
    v1::Device device;
    IssuedCertificate certificate;
    bool rekeyed = false;  // an existing device enrolled again after an operator's rekey
  };
  // One transaction: uses the token once (its errors as EnrollmentTokenRepo::Consume), enrolls
  // the device as Enroll does, issues its certificate and writes the "device.enroll" audit row.
  // A refusal changes nothing (the token use is not spent); record it with RecordRefusedEnrollment.
  absl::StatusOr<Enrollment> EnrollWithToken(const EnrollmentAttempt& attempt,
                                             const CertificateIssuer& issue);
  // The audit row of a refused enrollment attempt (token id when the token is known).
  absl::Status RecordRefusedEnrollment(const std::string& token_hash, const std::string& device_id,
                                       const absl::Status& reason);

  // Allows one enrollment of the active device id until `until_unix` (see Enroll). NotFound,
  // FailedPrecondition for a decommissioned device.
  absl::StatusOr<v1::Device> AllowRekey(const std::string& device_id, int64_t until_unix);

  // Records a renewed certificate for an active device: it is accepted next to the current one
  // until the device first uses it (PromoteCertificate). A later renewal replaces it.
  // FailedPrecondition when the device is not active, NotFound for an unknown one.
  // Writes the "device.certificate.renew" audit row with it.
  absl::Status SetPendingCertificate(const std::string& device_id, const std::string& serial_hex);
  // Makes the pending certificate `serial_hex` the current one (the old one stops working).
  // False when it is not the pending one (e.g. a concurrent call promoted it already).
  absl::StatusOr<bool> PromoteCertificate(const std::string& device_id,
                                          const std::string& serial_hex);

  // Whether the device may download `sha256`: an artifact of a release targeted to it (a
  // deployment target that is not superseded), the artifact of a release once targeted to it
  // that its inventory says it holds (a patch base or rollback copy), or a ready patch to one of
  // those artifacts.
  absl::StatusOr<bool> MayFetchArtifact(const std::string& device_id, const std::string& sha256);
  // NotFound "device X not found".
  absl::StatusOr<v1::Device> Get(const std::string& device_id);
  // Devices (any status) whose labels contain every pair of `selector`, ordered by id.
  absl::StatusOr<std::vector<v1::Device>> List(const Labels& selector);
  // One page of List: device ids after `page.after`; continues after the last id.
  absl::StatusOr<Page<v1::Device>> ListPage(const Labels& selector, const PageRequest& page);
  // Removes `remove_keys`, then sets `set`. NotFound for an unknown device.
  absl::StatusOr<v1::Device> UpdateLabels(const std::string& device_id, const Labels& set,
                                          const std::vector<std::string>& remove_keys);
  // Idempotent. NotFound for an unknown device.
  absl::StatusOr<v1::Device> Decommission(const std::string& device_id);
  // Stores the reported inventory and last_seen. NotFound for an unknown device,
  // FailedPrecondition for a decommissioned one.
  absl::Status RecordCheckIn(const std::string& device_id, const v1::Inventory& inventory,
                             int64_t now_unix);
  // Device count per status name ("pending", "active", "decommissioned"; zeros included).
  absl::StatusOr<std::map<std::string, int64_t>> CountByStatus();
  // NotFound for an unknown device.
  absl::StatusOr<v1::DeviceStatus> Status(const std::string& device_id);

  // What mTLS authorization needs: the status and the serial of the current certificate.
  struct DeviceIdentity {
    v1::DeviceStatus status = v1::DEVICE_STATUS_UNSPECIFIED;
    std::string certificate_serial;
    std::string pending_certificate_serial;  // empty when no renewal waits for its first use
  };
  // NotFound for an unknown device.
  absl::StatusOr<DeviceIdentity> Identity(const std::string& device_id);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
