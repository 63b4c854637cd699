#include "server/store/internal/rows.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"

namespace edgefleet::server::internal {

absl::StatusOr<v1::Device> DeviceFromRow(const pqxx::row& row) {
  v1::Device device;
  device.set_device_id(row[0].as<std::string>());
  device.set_status(FromDb<v1::DeviceStatus>(row[1].as<std::string>(), "DEVICE_STATUS_"));
  absl::StatusOr<Labels> labels = LabelsFromJson(row[2].as<std::string>());
  if (!labels.ok()) return labels.status();
  device.mutable_labels()->insert(labels->begin(), labels->end());
  *device.mutable_first_seen() = UnixToTimestamp(row[3].as<int64_t>());
  *device.mutable_last_seen() = UnixToTimestamp(row[4].as<int64_t>());
  if (!row[5].is_null()) {
    if (absl::Status s = MessageFromJson(row[5].as<std::string>(), device.mutable_inventory());
        !s.ok()) {
      return s;
    }
  }
  return device;
}

absl::StatusOr<v1::ModelVersion> ModelVersionFromRow(const pqxx::row& row) {
  v1::ModelVersion mv;
  // inputs/outputs are stored as the JSON arrays of the message's own fields.
  if (absl::Status s = MessageFromJson(absl::StrCat("{\"inputs\":", row[5].as<std::string>(),
                                                    ",\"outputs\":", row[6].as<std::string>(), "}"),
                                       &mv);
      !s.ok()) {
    return s;
  }
  mv.set_model_name(row[0].as<std::string>());
  mv.set_version(row[1].as<std::string>());
  mv.set_format(FromDb<v1::ModelFormat>(row[2].as<std::string>(), "MODEL_FORMAT_"));
  mv.set_artifact_sha256(pqxx::binarystring(row[3]).str());
  mv.set_size_bytes(row[4].as<uint64_t>());
  absl::StatusOr<Labels> labels = LabelsFromJson(row[7].as<std::string>());
  if (!labels.ok()) return labels.status();
  mv.mutable_labels()->insert(labels->begin(), labels->end());
  mv.set_metadata_version(row[8].as<uint64_t>());
  *mv.mutable_created_at() = UnixToTimestamp(row[9].as<int64_t>());
  return mv;
}

}  // namespace edgefleet::server::internal
