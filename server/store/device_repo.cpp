#include "server/store/device_repo.h"

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/steps.h"
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

absl::Status AlreadyEnrolled(const std::string& device_id) {
  return absl::AlreadyExistsError(absl::StrCat(
      "device ", device_id,
      " is already enrolled; to enroll it with a new key an operator must allow it first "
      "(edgefleetctl device rekey ",
      device_id, ")"));
}

// Why a statement limited to active devices matched nothing.
absl::StatusOr<v1::Device> NotActive(pqxx::work& tx, const std::string& device_id) {
  pqxx::result r = tx.exec_params("SELECT status FROM devices WHERE id = $1", device_id);
  if (r.empty()) return NotFound(device_id);
  return absl::FailedPreconditionError(
      absl::StrCat("device ", device_id, " is ", r[0][0].as<std::string>()));
}

struct EnrolledRow {
  v1::Device device;
  bool rekeyed = false;
};

// The device part of an enrollment (see DeviceRepo::Enroll); `issue` runs only once the device
// id is accepted, so a refused id costs no certificate.
absl::StatusOr<EnrolledRow> EnrollRow(pqxx::work& tx, const std::string& device_id,
                                      const Labels& labels, const v1::Inventory& inventory,
                                      int64_t now_unix,
                                      const DeviceRepo::CertificateIssuer& issue) {
  // The row lock makes a concurrent enrollment of the same id wait for this one's outcome.
  pqxx::result existing = tx.exec_params(
      "SELECT status, coalesce(rekey_allowed_until > to_timestamp($2), false) FROM devices "
      "WHERE id = $1 FOR UPDATE",
      device_id, now_unix);
  const bool exists = !existing.empty();
  if (exists) {
    if (existing[0][0].as<std::string>() == "decommissioned") {
      return absl::FailedPreconditionError(
          absl::StrCat("device ", device_id, " is decommissioned"));
    }
    if (!existing[0][1].as<bool>()) return AlreadyEnrolled(device_id);
  }
  auto certificate = issue();
  if (!certificate.ok()) return certificate.status();
  if (exists) {
    // A rekey replaces the key only: the device keeps the labels operators gave it.
    pqxx::result r = tx.exec_params(
        absl::StrCat("UPDATE devices SET status = 'active', certificate_serial = $2, "
                     "pending_certificate_serial = NULL, rekey_allowed_until = NULL, "
                     "inventory = $3::jsonb, last_seen = to_timestamp($4) WHERE id = $1 "
                     "RETURNING ",
                     kDeviceColumns),
        device_id, certificate->serial_hex, internal::MessageToJson(inventory), now_unix);
    auto device = internal::DeviceFromRow(r[0]);
    if (!device.ok()) return device.status();
    return EnrolledRow{*std::move(device), true};
  }
  pqxx::result r = tx.exec_params(
      absl::StrCat("INSERT INTO devices (id, status, labels, first_seen, last_seen, inventory, "
                   "certificate_serial) VALUES ($1, 'active', $2::jsonb, to_timestamp($3), "
                   "to_timestamp($3), $4::jsonb, $5) ON CONFLICT (id) DO NOTHING RETURNING ",
                   kDeviceColumns),
      device_id, internal::LabelsToJson(labels), now_unix, internal::MessageToJson(inventory),
      certificate->serial_hex);
  if (r.empty()) return AlreadyEnrolled(device_id);  // a concurrent first enrollment won
  auto device = internal::DeviceFromRow(r[0]);
  if (!device.ok()) return device.status();
  return EnrolledRow{*std::move(device), false};
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

absl::StatusOr<v1::Device> DeviceRepo::Enroll(Tx& txn, const std::string& device_id,
                                              const Labels& labels, const v1::Inventory& inventory,
                                              const std::string& certificate_serial,
                                              int64_t now_unix) {
  return internal::InTx(
      txn, absl::StrCat("enroll device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        auto row = EnrollRow(tx, device_id, labels, inventory, now_unix, [&] {
          return absl::StatusOr<IssuedCertificate>(IssuedCertificate{"", certificate_serial, 0});
        });
        if (!row.ok()) return row.status();
        return std::move(row->device);
      });
}

absl::StatusOr<DeviceRepo::Enrollment> DeviceRepo::EnrollWithToken(Tx& txn,
                                                                   const EnrollmentAttempt& attempt,
                                                                   const CertificateIssuer& issue) {
  return internal::InTx(
      txn, absl::StrCat("enroll device ", attempt.device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<Enrollment> {
        // The token is checked first (a caller without a usable one learns nothing of the
        // device) and used last: its row stays locked from the use to the commit, and a
        // fleet-wide token would otherwise make every enrollment wait for the one before it
        // (certificate signing included: 80 enrollments/s with 8 callers, bench/fleet).
        auto token = internal::PeekEnrollmentToken(tx, attempt.token_hash, attempt.now_unix);
        if (!token.ok()) return token.status();
        IssuedCertificate certificate;
        auto row = EnrollRow(tx, attempt.device_id, token->labels, attempt.inventory,
                             attempt.now_unix, [&]() -> absl::StatusOr<IssuedCertificate> {
                               auto issued = issue();
                               if (issued.ok()) certificate = *issued;
                               return issued;
                             });
        if (!row.ok()) return row.status();
        internal::InsertAuditRow(
            tx, absl::StrCat("enrollment-token:", token->token_id), "device.enroll",
            internal::LabelsToJson({{"device_id", attempt.device_id},
                                    {"token_id", token->token_id},
                                    {"result", row->rekeyed ? "rekeyed" : "enrolled"},
                                    {"certificate_serial", certificate.serial_hex}}));
        // Last: exactly max_uses enrollments get past this; one that loses the race rolls back.
        if (auto used = internal::ConsumeEnrollmentToken(tx, attempt.token_hash, attempt.now_unix);
            !used.ok()) {
          return used.status();
        }
        return Enrollment{std::move(row->device), certificate, row->rekeyed};
      });
}

absl::Status DeviceRepo::RecordRefusedEnrollment(Tx& txn, const std::string& token_hash,
                                                 const std::string& device_id,
                                                 const absl::Status& reason) {
  return internal::InTx(txn, "record refused enrollment", [&](pqxx::work& tx) {
    pqxx::result token = tx.exec_params("SELECT id FROM enrollment_tokens WHERE token_hash = $1",
                                        pqxx::binarystring(token_hash));
    const std::string token_id = token.empty() ? "" : token[0][0].as<std::string>();
    // The device id and the reason may carry anything a caller sent: keep them printable.
    internal::InsertAuditRow(
        tx, absl::StrCat("enrollment-token:", token_id.empty() ? "unknown" : token_id),
        "device.enroll.refused",
        internal::LabelsToJson(
            {{"device_id", EscapeForLog(device_id.substr(0, 128))},
             {"token_id", token_id},
             {"result", "refused"},
             {"code", absl::StatusCodeToString(reason.code())},
             {"reason", EscapeForLog(std::string(reason.message().substr(0, 512)))}}));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Device> DeviceRepo::AllowRekey(Tx& txn, const std::string& device_id,
                                                  int64_t until_unix) {
  return internal::InTx(
      txn, absl::StrCat("allow rekey of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r =
            tx.exec_params(absl::StrCat("UPDATE devices SET rekey_allowed_until = to_timestamp($2) "
                                        "WHERE id = $1 AND status = 'active' RETURNING ",
                                        kDeviceColumns),
                           device_id, until_unix);
        if (!r.empty()) return internal::DeviceFromRow(r[0]);
        return NotActive(tx, device_id);
      });
}

absl::Status DeviceRepo::SetPendingCertificate(Tx& txn, const std::string& device_id,
                                               const std::string& serial_hex) {
  return internal::InTx(
      txn, absl::StrCat("record renewed certificate of device ", device_id),
      [&](pqxx::work& tx) -> absl::Status {
        pqxx::result r = tx.exec_params(
            "UPDATE devices SET pending_certificate_serial = $2 "
            "WHERE id = $1 AND status = 'active' RETURNING 1",
            device_id, serial_hex);
        if (r.empty()) return NotActive(tx, device_id).status();
        internal::InsertAuditRow(
            tx, absl::StrCat("device:", device_id), "device.certificate.renew",
            internal::LabelsToJson({{"device_id", device_id}, {"certificate_serial", serial_hex}}));
        return absl::OkStatus();
      });
}

absl::StatusOr<bool> DeviceRepo::PromoteCertificate(Tx& txn, const std::string& device_id,
                                                    const std::string& serial_hex) {
  return internal::InTx(
      txn, absl::StrCat("activate renewed certificate of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        pqxx::result r = tx.exec_params(
            "UPDATE devices SET certificate_serial = pending_certificate_serial, "
            "pending_certificate_serial = NULL "
            "WHERE id = $1 AND status = 'active' AND pending_certificate_serial = $2 RETURNING 1",
            device_id, serial_hex);
        return !r.empty();
      });
}

absl::StatusOr<bool> DeviceRepo::MayFetchArtifact(const std::string& device_id,
                                                  const std::string& sha256) {
  return WithTransaction(
      db_, absl::StrCat("check artifact access of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        // Released to this device: its live targets (a rolled back one releases both versions),
        // plus superseded ones whose artifact its
        // inventory reports holding (inventory alone proves nothing: a device could claim any
        // digest).
        pqxx::result r = tx.exec_params(
            "WITH held AS ("
            "  SELECT m.artifact_sha256 AS sha FROM devices dev, inventory_models(dev.inventory) m "
            "  WHERE dev.id = $1 AND m.artifact_sha256 IS NOT NULL"
            "), released AS ("
            "  SELECT mv.artifact_sha256 AS sha FROM deployment_targets t "
            "  JOIN deployments d ON d.id = t.deployment_id "
            "  JOIN model_versions mv ON mv.model_name = d.model_name AND mv.version = d.version "
            "  JOIN devices dev ON dev.id = t.device_id AND dev.status = 'active' "
            "  WHERE t.device_id = $1 "
            "    AND (t.state <> 'superseded' OR mv.artifact_sha256 IN (SELECT sha FROM held))"
            // A rolled back target releases the version its device ran before.
            "  UNION SELECT mv.artifact_sha256 FROM deployment_targets t "
            "  JOIN deployments d ON d.id = t.deployment_id "
            "  JOIN model_versions mv ON mv.model_name = d.model_name "
            "    AND mv.version = t.previous_version "
            "  JOIN devices dev ON dev.id = t.device_id AND dev.status = 'active' "
            "  WHERE t.device_id = $1 AND t.state <> 'superseded' "
            "    AND t.rollback_metadata_version IS NOT NULL"
            ") SELECT EXISTS (SELECT 1 FROM released WHERE sha = $2) OR EXISTS ("
            "  SELECT 1 FROM patches p WHERE p.patch_sha256 = $2 AND p.state = 'ready' "
            "  AND p.to_sha256 IN (SELECT sha FROM released))",
            device_id, pqxx::binarystring(sha256));
        return r[0][0].as<bool>();
      });
}

absl::StatusOr<v1::Device> DeviceRepo::Get(const std::string& device_id) {
  return WithTransaction(
      db_, absl::StrCat("get device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kDeviceColumns, " FROM devices WHERE id = $1"), device_id);
        if (r.empty()) return NotFound(device_id);
        absl::StatusOr<v1::Device> device = internal::DeviceFromRow(r[0]);
        if (!device.ok()) return device;
        // What its agent lost of its telemetry (migration 0014), once it reported any.
        pqxx::result drops = tx.exec_params(
            "SELECT total_outbox_full, total_refused FROM telemetry_drops WHERE device_id = $1",
            device_id);
        if (!drops.empty()) {
          device->mutable_telemetry_dropped()->set_outbox_full(
              static_cast<uint64_t>(drops[0][0].as<int64_t>()));
          device->mutable_telemetry_dropped()->set_refused(
              static_cast<uint64_t>(drops[0][1].as<int64_t>()));
        }
        return device;
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
        // Without a selector the page is a range of the primary key. `labels @> '{}'` matches
        // every row too, but the planner then reads the whole labels index and sorts it for
        // every page (a page took 32 ms at 20,000 devices, bench/fleet).
        const auto limit = static_cast<int64_t>(page.size + 1);
        auto devices = DevicesFromRows(
            selector.empty()
                ? tx.exec_params(absl::StrCat("SELECT ", kDeviceColumns,
                                              " FROM devices WHERE id > $1 ORDER BY id LIMIT $2"),
                                 page.after, limit)
                : tx.exec_params(absl::StrCat("SELECT ", kDeviceColumns,
                                              " FROM devices WHERE labels @> $1::jsonb AND id > $2 "
                                              "ORDER BY id LIMIT $3"),
                                 internal::LabelsToJson(selector), page.after, limit));
        if (!devices.ok()) return devices.status();
        return FinishPage(*std::move(devices), page.size,
                          [](const v1::Device& d) { return d.device_id(); });
      });
}

absl::StatusOr<v1::Device> DeviceRepo::UpdateLabels(Tx& txn, const std::string& device_id,
                                                    const Labels& set,
                                                    const std::vector<std::string>& remove_keys) {
  return internal::InTx(
      txn, absl::StrCat("label device ", device_id),
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

absl::StatusOr<v1::Device> DeviceRepo::Decommission(Tx& txn, const std::string& device_id) {
  return internal::InTx(
      txn, absl::StrCat("decommission device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Device> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("UPDATE devices SET status = 'decommissioned' WHERE id = $1 RETURNING ",
                         kDeviceColumns),
            device_id);
        if (r.empty()) return NotFound(device_id);
        return internal::DeviceFromRow(r[0]);
      });
}

absl::Status DeviceRepo::TouchLastSeen(Tx& txn, const std::map<std::string, int64_t>& seen_unix) {
  if (seen_unix.empty()) return absl::OkStatus();
  return internal::InTx(txn, absl::StrCat("record last seen of ", seen_unix.size(), " devices"),
                        [&](pqxx::work& tx) -> absl::Status {
                          std::vector<std::string> ids;
                          std::string times = "{";
                          for (const auto& [id, seen] : seen_unix) {
                            ids.push_back(id);
                            if (times.size() > 1) times += ',';
                            times += std::to_string(seen);
                          }
                          times += '}';
                          tx.exec_params(
                              "UPDATE devices d SET last_seen = to_timestamp(s.seen) "
                              "FROM unnest($1::text[], $2::bigint[]) AS s(id, seen) "
                              "WHERE d.id = s.id AND d.last_seen < to_timestamp(s.seen)",
                              internal::TextArrayLiteral(ids), times);
                          return absl::OkStatus();
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

absl::StatusOr<std::vector<int64_t>> DeviceRepo::CountActiveNotSeenSince(
    const std::vector<int64_t>& cutoffs_unix) {
  return WithTransaction(
      db_, "count devices not seen", [&](pqxx::work& tx) -> absl::StatusOr<std::vector<int64_t>> {
        std::string cutoffs = "{";
        for (int64_t cutoff : cutoffs_unix) {
          if (cutoffs.size() > 1) cutoffs += ',';
          cutoffs += std::to_string(cutoff);
        }
        cutoffs += '}';
        std::vector<int64_t> counts;
        for (const pqxx::row& row : tx.exec_params(
                 "SELECT count(d.id) FROM unnest($1::bigint[]) WITH ORDINALITY AS c(cutoff, i) "
                 "LEFT JOIN devices d ON d.status = 'active' AND d.last_seen < "
                 "to_timestamp(c.cutoff) GROUP BY c.i ORDER BY c.i",
                 cutoffs)) {
          counts.push_back(row[0].as<int64_t>());
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
  return internal::AutocommitOnce(
      db_, absl::StrCat("get identity of device ", device_id),
      [&](pqxx::nontransaction& tx) -> absl::StatusOr<DeviceIdentity> {
        pqxx::result r = internal::ExecPrepared(
            tx, "device_identity",
            "SELECT status, coalesce(certificate_serial, ''), "
            "coalesce(pending_certificate_serial, '') FROM devices WHERE id = $1",
            device_id);
        if (r.empty()) return NotFound(device_id);
        return DeviceIdentity{
            internal::FromDb<v1::DeviceStatus>(r[0][0].as<std::string>(), "DEVICE_STATUS_"),
            r[0][1].as<std::string>(), r[0][2].as<std::string>()};
      });
}

}  // namespace edgefleet::server
