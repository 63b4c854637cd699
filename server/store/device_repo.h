// DeviceRepo is the device registry: enrollment, labels, status and check-in inventory.
#pragma once

#include <cstdint>
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

  // A new device becomes active. An existing one gets the new certificate serial and inventory,
  // `labels` merged over its own (re-enrollment after losing its key). FailedPrecondition
  // "device X is decommissioned" for a decommissioned one.
  absl::StatusOr<v1::Device> Enroll(const std::string& device_id, const Labels& labels,
                                    const v1::Inventory& inventory,
                                    const std::string& certificate_serial, int64_t now_unix);
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
  };
  // NotFound for an unknown device.
  absl::StatusOr<DeviceIdentity> Identity(const std::string& device_id);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
