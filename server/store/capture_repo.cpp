#include "server/store/capture_repo.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {
namespace {

using internal::InTx;

constexpr char kPrefix[] = "CAPTURE_TRIGGER_";
constexpr char kColumns[] =
    "id, device_id, model_name, version, floor(extract(epoch FROM captured_at))::bigint, "
    "extract(microseconds FROM captured_at)::bigint % 1000000, trigger, sha256, size_bytes, "
    "tensors::text, floor(extract(epoch FROM received_at))::bigint FROM captures";

absl::StatusOr<v1::CaptureInfo> InfoFromRow(const pqxx::row& row) {
  v1::CaptureInfo info;
  info.set_capture_id(row[0].as<std::string>());
  info.set_device_id(row[1].as<std::string>());
  info.set_model_name(row[2].as<std::string>());
  info.set_version(row[3].as<std::string>());
  info.mutable_captured_at()->set_seconds(row[4].as<int64_t>());
  info.mutable_captured_at()->set_nanos(static_cast<int32_t>(row[5].as<int64_t>() * 1000));
  info.set_trigger(internal::FromDb<v1::CaptureTrigger>(row[6].as<std::string>(), kPrefix));
  info.set_sha256(pqxx::binarystring(row[7]).str());
  info.set_size_bytes(row[8].as<uint64_t>());
  // The tensors are stored as a JSON array; read them through a wrapper message.
  v1::CaptureInfo tensors;
  if (auto s = internal::MessageFromJson(
          absl::StrCat("{\"tensors\":", row[9].as<std::string>(), "}"), &tensors);
      !s.ok()) {
    return absl::DataLossError(absl::StrCat("capture ", info.capture_id(), ": ", s.message()));
  }
  *info.mutable_tensors() = tensors.tensors();
  info.mutable_received_at()->set_seconds(row[10].as<int64_t>());
  return info;
}

std::string TensorsJson(const v1::CaptureInfo& info) {
  v1::CaptureInfo only;
  *only.mutable_tensors() = info.tensors();
  std::string json = internal::MessageToJson(only);  // {"tensors":[...]} or {}
  const auto colon = json.find(':');
  if (colon == std::string::npos) return "[]";
  return json.substr(colon + 1, json.size() - colon - 2);
}

}  // namespace

absl::Status CaptureRepo::LockDevice(Tx& txn, const std::string& device_id) {
  return InTx(txn, absl::StrCat("lock captures of device ", device_id),
              [&](pqxx::work& tx) -> absl::Status {
                if (tx.exec_params("SELECT 1 FROM devices WHERE id = $1", device_id).empty()) {
                  return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
                }
                tx.exec_params("SELECT pg_advisory_xact_lock(hashtext('edgefleet_capture:' || $1))",
                               device_id);
                return absl::OkStatus();
              });
}

absl::StatusOr<std::optional<int64_t>> CaptureRepo::FindByKey(Tx& txn, const std::string& device_id,
                                                              uint64_t stream_id,
                                                              uint64_t sequence) {
  return InTx(
      txn, "look up a capture", [&](pqxx::work& tx) -> absl::StatusOr<std::optional<int64_t>> {
        pqxx::result rows = tx.exec_params(
            "SELECT id FROM captures WHERE device_id = $1 AND stream_id = $2 AND sequence = $3",
            device_id, static_cast<int64_t>(stream_id), static_cast<int64_t>(sequence));
        if (rows.empty()) return std::optional<int64_t>();
        return std::optional<int64_t>(rows[0][0].as<int64_t>());
      });
}

absl::StatusOr<std::optional<uint64_t>> CaptureRepo::DailyCap(Tx& txn, const std::string& device_id,
                                                              const std::string& model_name,
                                                              const std::string& version) {
  return InTx(txn, absl::StrCat("read the capture request for device ", device_id),
              [&](pqxx::work& tx) -> absl::StatusOr<std::optional<uint64_t>> {
                std::optional<uint64_t> cap;
                for (const pqxx::row& row : tx.exec_params(
                         "SELECT d.capture FROM deployment_targets t JOIN deployments d "
                         "ON d.id = t.deployment_id WHERE t.device_id = $1 AND d.model_name = $2 "
                         "AND d.version = $3 AND d.capture IS NOT NULL",
                         device_id, model_name, version)) {
                  v1::CaptureSpec spec;
                  if (!spec.ParseFromString(pqxx::binarystring(row[0]).str()) || !spec.enabled())
                    continue;
                  cap = std::max(cap.value_or(0), spec.max_bytes_per_day());
                }
                return cap;
              });
}

absl::StatusOr<uint64_t> CaptureRepo::BytesOnDay(Tx& txn, const std::string& device_id,
                                                 int64_t day_unix) {
  return InTx(
      txn, "sum a device's captures of a day", [&](pqxx::work& tx) -> absl::StatusOr<uint64_t> {
        return tx
            .exec_params1(
                "SELECT coalesce(sum(size_bytes), 0)::bigint FROM captures WHERE device_id = $1 "
                "AND captured_day = (to_timestamp($2) AT TIME ZONE 'UTC')::date",
                device_id, day_unix)[0]
            .as<uint64_t>();
      });
}

absl::StatusOr<int64_t> CaptureRepo::Insert(Tx& txn, const std::string& device_id,
                                            uint64_t stream_id, uint64_t sequence,
                                            const v1::CaptureInfo& info, int64_t now_unix) {
  const double captured_at =
      static_cast<double>(info.captured_at().seconds()) + info.captured_at().nanos() / 1e9;
  return InTx(
      txn, absl::StrCat("store a capture of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
        return tx
            .exec_params1(
                "INSERT INTO captures (device_id, stream_id, sequence, model_name, version, "
                "captured_at, captured_day, received_at, trigger, sha256, size_bytes, "
                "tensors) VALUES ($1, $2, $3, $4, $5, to_timestamp($6), "
                "(to_timestamp($6) AT TIME ZONE 'UTC')::date, to_timestamp($7), $8, $9, "
                "$10, $11::jsonb) RETURNING id",
                device_id, static_cast<int64_t>(stream_id), static_cast<int64_t>(sequence),
                info.model_name(), info.version(), captured_at, now_unix,
                internal::ToDb(info.trigger(), kPrefix), pqxx::binarystring(info.sha256()),
                static_cast<int64_t>(info.size_bytes()), TensorsJson(info))[0]
            .as<int64_t>();
      });
}

absl::StatusOr<Page<v1::CaptureInfo>> CaptureRepo::ListPage(const CaptureFilter& filter,
                                                            const PageRequest& page) {
  int64_t after = 0;
  if (!page.after.empty() && !absl::SimpleAtoi(page.after, &after)) {
    return absl::InvalidArgumentError("page_token does not name a capture");
  }
  return internal::WithTransaction(
      db_, "list captures", [&](pqxx::work& tx) -> absl::StatusOr<Page<v1::CaptureInfo>> {
        std::vector<v1::CaptureInfo> rows;
        for (const pqxx::row& row : tx.exec_params(
                 absl::StrCat("SELECT ", kColumns,
                              " WHERE model_name = $1 AND ($2 = '' OR version = $2) "
                              "AND ($3::bigint IS NULL OR captured_at >= to_timestamp($3)) "
                              "AND id > $4 ORDER BY id LIMIT $5"),
                 filter.model_name, filter.version, filter.since_unix, after,
                 static_cast<int64_t>(page.size + 1))) {
          auto info = InfoFromRow(row);
          if (!info.ok()) return info.status();
          rows.push_back(*std::move(info));
        }
        return FinishPage(std::move(rows), page.size,
                          [](const v1::CaptureInfo& c) { return c.capture_id(); });
      });
}

absl::StatusOr<v1::CaptureInfo> CaptureRepo::Get(const std::string& capture_id) {
  int64_t id = 0;
  absl::Status not_found = absl::NotFoundError(absl::StrCat("capture ", capture_id, " not found"));
  if (!absl::SimpleAtoi(capture_id, &id) || id <= 0) return not_found;
  return internal::WithTransaction(db_, absl::StrCat("read capture ", capture_id),
                                   [&](pqxx::work& tx) -> absl::StatusOr<v1::CaptureInfo> {
                                     pqxx::result rows = tx.exec_params(
                                         absl::StrCat("SELECT ", kColumns, " WHERE id = $1"), id);
                                     if (rows.empty()) return not_found;
                                     return InfoFromRow(rows[0]);
                                   });
}

absl::StatusOr<std::vector<std::string>> CaptureRepo::DeleteBefore(Tx& txn, int64_t before_unix) {
  return InTx(
      txn, "delete old captures", [&](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
        std::set<std::string> gone;
        for (const pqxx::row& row : tx.exec_params(
                 "DELETE FROM captures WHERE received_at < to_timestamp($1) RETURNING sha256",
                 before_unix)) {
          gone.insert(pqxx::binarystring(row[0]).str());
        }
        std::vector<std::string> unreferenced;
        for (const std::string& sha : gone) {
          if (tx.exec_params("SELECT 1 FROM captures WHERE sha256 = $1 LIMIT 1",
                             pqxx::binarystring(sha))
                  .empty()) {
            unreferenced.push_back(sha);
          }
        }
        return unreferenced;
      });
}

}  // namespace edgefleet::server
