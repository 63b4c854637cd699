#include "server/store/device_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

namespace {

constexpr const char* kDeviceColumns =
    "id, status, labels::text, floor(extract(epoch FROM first_seen))::bigint, "
    "floor(extract(epoch FROM last_seen))::bigint, inventory::text";

absl::Status NotFound(const std::string& device_id) {
  return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
}

absl::StatusOr<std::vector<v1::Device>> DevicesFromRows(const pqxx::result& r) {
  std::vector<v1::Device> devices;
  devices.reserve(r.size());
  for (const pqxx::row& row : r) {
    absl::StatusOr<v1::Device> d = internal::DeviceFromRow(row);
    if (!d.ok()) return d.status();
    devices.push_back(*std::move(d));
  }
  return devices;
}

}  // namespace

absl::StatusOr<v1::Device> DeviceRepo::Enroll(const std::string& device_id, const Labels& labels,
                                              const v1::Inventory& inventory,
                                              const std::string& certificate_serial,
                                              int64_t now_unix) {
  return WithTransaction(
      db_, absl::StrCat("enroll device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat(
                "INSERT INTO devices AS d (id, status, labels, first_seen, last_seen, inventory, "
                "certificate_serial) VALUES ($1, 'active', $2::jsonb, to_timestamp($3), "
                "to_timestamp($3), $4::jsonb, $5) "
                "ON CONFLICT (id) DO UPDATE SET status = 'active', "
                "labels = d.labels || EXCLUDED.labels, last_seen = EXCLUDED.last_seen, "
                "inventory = EXCLUDED.inventory, certificate_serial = EXCLUDED.certificate_serial "
                "WHERE d.status <> 'decommissioned' RETURNING ",
                kDeviceColumns),
            device_id, internal::LabelsToJson(labels), now_unix, internal::MessageToJson(inventory),
            certificate_serial);
        if (r.empty()) {
          return absl::FailedPreconditionError(
              absl::StrCat("device ", device_id, " is decommissioned"));
        }
        return internal::DeviceFromRow(r[0]);
      });
}

absl::StatusOr<v1::Device> DeviceRepo::Get(const std::string& device_id) {
  return WithTransaction(
      db_, absl::StrCat("get device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kDeviceColumns, " FROM devices WHERE id = $1"), device_id);
        if (r.empty()) return NotFound(device_id);
        return internal::DeviceFromRow(r[0]);
      });
}

absl::StatusOr<std::vector<v1::Device>> DeviceRepo::List(const Labels& selector) {
  return WithTransaction(
      db_, "list devices", [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::Device>> {
        return DevicesFromRows(
            tx.exec_params(absl::StrCat("SELECT ", kDeviceColumns,
                                        " FROM devices WHERE labels @> $1::jsonb ORDER BY id"),
                           internal::LabelsToJson(selector)));
      });
}

absl::StatusOr<Page<v1::Device>> DeviceRepo::ListPage(const Labels& selector,
                                                      const PageRequest& page) {
  return WithTransaction(
      db_, "list a page of devices", [&](pqxx::work& tx) -> absl::StatusOr<Page<v1::Device>> {
        auto devices = DevicesFromRows(tx.exec_params(
            absl::StrCat("SELECT ", kDeviceColumns,
                         " FROM devices WHERE labels @> $1::jsonb AND id > $2 ORDER BY id "
                         "LIMIT $3"),
            internal::LabelsToJson(selector), page.after, static_cast<int64_t>(page.size + 1)));
        if (!devices.ok()) return devices.status();
        return FinishPage(*std::move(devices), page.size,
                          [](const v1::Device& d) { return d.device_id(); });
      });
}

absl::StatusOr<v1::Device> DeviceRepo::UpdateLabels(const std::string& device_id, const Labels& set,
                                                    const std::vector<std::string>& remove_keys) {
  return WithTransaction(
      db_, absl::StrCat("label device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("UPDATE devices SET labels = (labels - ARRAY(SELECT "
                         "jsonb_array_elements_text($3::jsonb))) || $2::jsonb WHERE id = $1 "
                         "RETURNING ",
                         kDeviceColumns),
            device_id, internal::LabelsToJson(set), internal::StringsToJson(remove_keys));
        if (r.empty()) return NotFound(device_id);
        return internal::DeviceFromRow(r[0]);
      });
}

absl::StatusOr<v1::Device> DeviceRepo::Decommission(const std::string& device_id) {
  return WithTransaction(
      db_, absl::StrCat("decommission device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("UPDATE devices SET status = 'decommissioned' WHERE id = $1 RETURNING ",
                         kDeviceColumns),
            device_id);
        if (r.empty()) return NotFound(device_id);
        return internal::DeviceFromRow(r[0]);
      });
}

absl::Status DeviceRepo::RecordCheckIn(const std::string& device_id, const v1::Inventory& inventory,
                                       int64_t now_unix) {
  return WithTransaction(
      db_, absl::StrCat("record check-in of device ", device_id),
      [&](pqxx::work& tx) -> absl::Status {
        pqxx::result r = tx.exec_params(
            "UPDATE devices SET inventory = $2::jsonb, last_seen = to_timestamp($3) "
            "WHERE id = $1 AND status <> 'decommissioned' RETURNING 1",
            device_id, internal::MessageToJson(inventory), now_unix);
        if (!r.empty()) return absl::OkStatus();
        if (tx.exec_params("SELECT 1 FROM devices WHERE id = $1", device_id).empty()) {
          return NotFound(device_id);
        }
        return absl::FailedPreconditionError(
            absl::StrCat("device ", device_id, " is decommissioned"));
      });
}

absl::StatusOr<std::map<std::string, int64_t>> DeviceRepo::CountByStatus() {
  return WithTransaction(
      db_, "count devices", [&](pqxx::work& tx) -> absl::StatusOr<std::map<std::string, int64_t>> {
        std::map<std::string, int64_t> counts = {
            {"pending", 0}, {"active", 0}, {"decommissioned", 0}};
        for (const pqxx::row& row : tx.exec("SELECT status, count(*) FROM devices GROUP BY 1")) {
          counts[row[0].as<std::string>()] = row[1].as<int64_t>();
        }
        return counts;
      });
}

absl::StatusOr<v1::DeviceStatus> DeviceRepo::Status(const std::string& device_id) {
  return WithTransaction(
      db_, absl::StrCat("get status of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::DeviceStatus> {
        pqxx::result r = tx.exec_params("SELECT status FROM devices WHERE id = $1", device_id);
        if (r.empty()) return NotFound(device_id);
        return internal::FromDb<v1::DeviceStatus>(r[0][0].as<std::string>(), "DEVICE_STATUS_");
      });
}

absl::StatusOr<DeviceRepo::DeviceIdentity> DeviceRepo::Identity(const std::string& device_id) {
  return WithTransaction(
      db_, absl::StrCat("get identity of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<DeviceIdentity> {
        pqxx::result r = tx.exec_params(
            "SELECT status, coalesce(certificate_serial, '') FROM devices WHERE id = $1",
            device_id);
        if (r.empty()) return NotFound(device_id);
        return DeviceIdentity{
            internal::FromDb<v1::DeviceStatus>(r[0][0].as<std::string>(), "DEVICE_STATUS_"),
            r[0][1].as<std::string>()};
      });
}

}  // namespace edgefleet::server
