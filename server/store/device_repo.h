// DeviceStore is the device registry: enrollment, labels, status and check-in inventory.
// DeviceRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
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

class DeviceStore {
 public:
  virtual ~DeviceStore() = default;

  // A new device becomes active with `labels`. An active device id is refused with
  // AlreadyExists unless an operator allowed a rekey (AllowRekey) that has not expired: then the
  // device keeps its labels and gets the new certificate serial and inventory, and the rekey is
  // used up. FailedPrecondition "device X is decommissioned" for a decommissioned one.
  virtual absl::StatusOr<v1::Device> Enroll(Tx& tx, const std::string& device_id,
                                            const Labels& labels, const v1::Inventory& inventory,
                                            const std::string& certificate_serial,
                                            int64_t now_unix) = 0;

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
  // All in `tx`: uses the token once (its errors as EnrollmentTokenRepo::Consume), enrolls
  // the device as Enroll does, issues its certificate and writes the "device.enroll" audit row.
  // A refusal returns an error (roll `tx` back: the token use is not spent); record it with
  // RecordRefusedEnrollment in a transaction of its own.
  virtual absl::StatusOr<Enrollment> EnrollWithToken(Tx& tx, const EnrollmentAttempt& attempt,
                                                     const CertificateIssuer& issue) = 0;
  // The audit row of a refused enrollment attempt (token id when the token is known).
  virtual absl::Status RecordRefusedEnrollment(Tx& tx, const std::string& token_hash,
                                               const std::string& device_id,
                                               const absl::Status& reason) = 0;
  // Allows one enrollment of the active device id until `until_unix` (see Enroll). NotFound,
  // FailedPrecondition for a decommissioned device.
  virtual absl::StatusOr<v1::Device> AllowRekey(Tx& tx, const std::string& device_id,
                                                int64_t until_unix) = 0;
  // Records a renewed certificate for an active device: it is accepted next to the current one
  // until the device first uses it (PromoteCertificate). A later renewal replaces it.
  // FailedPrecondition when the device is not active, NotFound for an unknown one.
  // Writes the "device.certificate.renew" audit row with it.
  virtual absl::Status SetPendingCertificate(Tx& tx, const std::string& device_id,
                                             const std::string& serial_hex) = 0;
  // Makes the pending certificate `serial_hex` the current one (the old one stops working).
  // False when it is not the pending one (e.g. a concurrent call promoted it already).
  virtual absl::StatusOr<bool> PromoteCertificate(Tx& tx, const std::string& device_id,
                                                  const std::string& serial_hex) = 0;
  // Whether the device may download `sha256`: an artifact of a release targeted to it (a
  // deployment target that is not superseded), the artifact of a release once targeted to it
  // that its inventory says it holds (a patch base or rollback copy), or a ready patch to one of
  // those artifacts.
  virtual absl::StatusOr<bool> MayFetchArtifact(const std::string& device_id,
                                                const std::string& sha256) = 0;
  // NotFound "device X not found".
  virtual absl::StatusOr<v1::Device> Get(const std::string& device_id) = 0;
  // Devices (any status) whose labels contain every pair of `selector`, ordered by id.
  virtual absl::StatusOr<std::vector<v1::Device>> List(const Labels& selector) = 0;
  // One page of List: device ids after `page.after`; continues after the last id.
  virtual absl::StatusOr<Page<v1::Device>> ListPage(const Labels& selector,
                                                    const PageRequest& page) = 0;
  // Removes `remove_keys`, then sets `set`. NotFound for an unknown device.
  virtual absl::StatusOr<v1::Device> UpdateLabels(Tx& tx, const std::string& device_id,
                                                  const Labels& set,
                                                  const std::vector<std::string>& remove_keys) = 0;
  // Idempotent. NotFound for an unknown device.
  virtual absl::StatusOr<v1::Device> Decommission(Tx& tx, const std::string& device_id) = 0;
  // Moves each device's last_seen forward to its time (never back), in one statement; unknown
  // devices are skipped.
  virtual absl::Status TouchLastSeen(Tx& tx, const std::map<std::string, int64_t>& seen_unix) = 0;
  // Device count per status name ("pending", "active", "decommissioned"; zeros included).
  virtual absl::StatusOr<std::map<std::string, int64_t>> CountByStatus() = 0;
  // For each cutoff (unix seconds), the active devices last seen before it, in the cutoffs'
  // order: the devices that stopped checking in.
  virtual absl::StatusOr<std::vector<int64_t>> CountActiveNotSeenSince(
      const std::vector<int64_t>& cutoffs_unix) = 0;
  // NotFound for an unknown device.
  virtual absl::StatusOr<v1::DeviceStatus> Status(const std::string& device_id) = 0;

  // What mTLS authorization needs: the status and the serial of the current certificate.
  struct DeviceIdentity {
    v1::DeviceStatus status = v1::DEVICE_STATUS_UNSPECIFIED;
    std::string certificate_serial;
    std::string pending_certificate_serial;  // empty when no renewal waits for its first use
  };
  // NotFound for an unknown device.
  virtual absl::StatusOr<DeviceIdentity> Identity(const std::string& device_id) = 0;
};

// The PostgreSQL DeviceStore.
class DeviceRepo final : public DeviceStore {
 public:
  explicit DeviceRepo(Database& db) : db_(db) {}
  absl::StatusOr<v1::Device> Enroll(Tx& tx, const std::string& device_id, const Labels& labels,
                                    const v1::Inventory& inventory,
                                    const std::string& certificate_serial,
                                    int64_t now_unix) override;
  absl::StatusOr<Enrollment> EnrollWithToken(Tx& tx, const EnrollmentAttempt& attempt,
                                             const CertificateIssuer& issue) override;
  absl::Status RecordRefusedEnrollment(Tx& tx, const std::string& token_hash,
                                       const std::string& device_id,
                                       const absl::Status& reason) override;
  absl::StatusOr<v1::Device> AllowRekey(Tx& tx, const std::string& device_id,
                                        int64_t until_unix) override;
  absl::Status SetPendingCertificate(Tx& tx, const std::string& device_id,
                                     const std::string& serial_hex) override;
  absl::StatusOr<bool> PromoteCertificate(Tx& tx, const std::string& device_id,
                                          const std::string& serial_hex) override;
  absl::StatusOr<bool> MayFetchArtifact(const std::string& device_id,
                                        const std::string& sha256) override;
  absl::StatusOr<v1::Device> Get(const std::string& device_id) override;
  absl::StatusOr<std::vector<v1::Device>> List(const Labels& selector) override;
  absl::StatusOr<Page<v1::Device>> ListPage(const Labels& selector,
                                            const PageRequest& page) override;
  absl::StatusOr<v1::Device> UpdateLabels(Tx& tx, const std::string& device_id, const Labels& set,
                                          const std::vector<std::string>& remove_keys) override;
  absl::StatusOr<v1::Device> Decommission(Tx& tx, const std::string& device_id) override;
  absl::Status TouchLastSeen(Tx& tx, const std::map<std::string, int64_t>& seen_unix) override;
  absl::StatusOr<std::map<std::string, int64_t>> CountByStatus() override;
  absl::StatusOr<std::vector<int64_t>> CountActiveNotSeenSince(
      const std::vector<int64_t>& cutoffs_unix) override;
  absl::StatusOr<v1::DeviceStatus> Status(const std::string& device_id) override;
  absl::StatusOr<DeviceIdentity> Identity(const std::string& device_id) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
