#include "server/store/telemetry_repo.h"

#include <algorithm>
#include <array>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

absl::Status TelemetryRepo::Insert(Tx& txn, const std::string& device_id,
                                   const v1::ModelTelemetry& telemetry, int64_t now_unix) {
  auto seconds = [&](const google::protobuf::Timestamp& t, bool set) {
    return set ? static_cast<double>(t.seconds()) + t.nanos() / 1e9 : static_cast<double>(now_unix);
  };
  const v1::LatencySummary& latency = telemetry.latency();
  return internal::InTx(
      txn, absl::StrCat("store telemetry of device ", device_id), [&](pqxx::work& tx) {
        tx.exec_params(
            "INSERT INTO model_telemetry (device_id, model_name, version, inference_count, "
            "error_count, latency_p50_seconds, latency_p95_seconds, latency_p99_seconds, "
            "latency_max_seconds, latency_sum_seconds, window_start, window_end, received_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11), "
            "to_timestamp($12), to_timestamp($13))",
            device_id, telemetry.model_name(), telemetry.version(),
            static_cast<int64_t>(telemetry.inference_count()),
            static_cast<int64_t>(telemetry.error_count()), latency.p50_seconds(),
            latency.p95_seconds(), latency.p99_seconds(), latency.max_seconds(),
            latency.sum_seconds(), seconds(telemetry.window_start(), telemetry.has_window_start()),
            seconds(telemetry.window_end(), telemetry.has_window_end()), now_unix);
        return absl::OkStatus();
      });
}

absl::StatusOr<TelemetryStore::DeviceContext> TelemetryRepo::ReadDeviceContext(
    Tx& txn, const std::string& device_id) {
  return internal::InTx(
      txn, absl::StrCat("read telemetry context of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<DeviceContext> {
        // One row per model (one with a NULL model when it has none), each with the hw label.
        // Inventory is protobuf JSON with the proto's field names.
        pqxx::result r = internal::ExecPrepared(
            tx, "telemetry_device_context",
            "SELECT coalesce(dev.labels->>'hw', ''), m.name FROM devices dev "
            "LEFT JOIN LATERAL ("
            "  SELECT d.model_name AS name FROM deployment_targets t "
            "    JOIN deployments d ON d.id = t.deployment_id WHERE t.device_id = dev.id "
            "  UNION SELECT e->>'model_name' FROM jsonb_array_elements("
            "    CASE WHEN jsonb_typeof(dev.inventory->'models') = 'array' "
            "    THEN dev.inventory->'models' ELSE '[]'::jsonb END) e WHERE e ? 'model_name'"
            ") m ON true WHERE dev.id = $1",
            device_id);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("no device ", device_id));
        DeviceContext context{.hw = r[0][0].as<std::string>(), .model_names = {}};
        for (const auto& row : r) {
          if (!row[1].is_null()) context.model_names.insert(row[1].as<std::string>());
        }
        return context;
      });
}

absl::StatusOr<bool> TelemetryRepo::VersionExists(Tx& txn, const std::string& model_name,
                                                  const std::string& version) {
  return internal::InTx(
      txn, "look up a model version", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        return !tx.exec_params(
                      "SELECT 1 FROM model_versions WHERE model_name = $1 AND version = $2",
                      model_name, version)
                    .empty();
      });
}

absl::StatusOr<bool> TelemetryStore::InsertWindow(Tx& tx, const std::string& device_id,
                                                  uint64_t stream_id,
                                                  const v1::TelemetryWindow& window,
                                                  const std::string& hw, int64_t now_unix) {
  const v1::TelemetryWindow* one[] = {&window};
  auto stored = InsertWindows(tx, device_id, stream_id, one, hw, now_unix);
  if (!stored.ok()) return stored.status();
  return stored->front();
}

absl::StatusOr<std::vector<bool>> TelemetryRepo::InsertWindows(
    Tx& txn, const std::string& device_id, uint64_t stream_id,
    std::span<const v1::TelemetryWindow* const> windows, const std::string& hw, int64_t now_unix) {
  if (windows.empty()) return std::vector<bool>();
  // One multi-row INSERT per upload: a statement per window cost a round trip and a parse each,
  // which is where the database's time went at thousands of windows a second. Parameters go as
  // text (pqxx's dynamic parameters are of one type), the summary as hex.
  static constexpr std::array<const char*, 12> kColumnValues = {"$",
                                                                "$",
                                                                "$",
                                                                "$",
                                                                "$",
                                                                "$",
                                                                "to_timestamp($)",
                                                                "to_timestamp($)",
                                                                "to_timestamp($)",
                                                                "$",
                                                                "$",
                                                                "decode($, 'hex')"};
  auto seconds = [](const google::protobuf::Timestamp& t) {
    return absl::StrFormat("%.6f", static_cast<double>(t.seconds()) + t.nanos() / 1e9);
  };
  std::string sql =
      "INSERT INTO telemetry_windows (device_id, stream_id, sequence, model_name, version, hw, "
      "window_start, window_end, received_at, request_count, error_count, summary) VALUES ";
  std::vector<std::string> params;
  params.reserve(windows.size() * kColumnValues.size());
  for (size_t i = 0; i < windows.size(); ++i) {
    const v1::TelemetryWindow& w = *windows[i];
    uint64_t errors = 0;
    for (const auto& e : w.errors()) errors += e.count();
    sql += i == 0 ? "(" : ", (";
    for (size_t c = 0; c < kColumnValues.size(); ++c) {
      const std::string number = absl::StrCat("$", i * kColumnValues.size() + c + 1);
      absl::StrAppend(&sql, c == 0 ? "" : ", ",
                      absl::StrReplaceAll(kColumnValues[c], {{"$", number}}));
    }
    sql += ")";
    // Ids are unsigned on the wire; stored as the same 64 bits in a bigint.
    params.push_back(device_id);
    params.push_back(std::to_string(static_cast<int64_t>(stream_id)));
    params.push_back(std::to_string(static_cast<int64_t>(w.sequence())));
    params.push_back(w.model_name());
    params.push_back(w.version());
    params.push_back(hw);
    params.push_back(seconds(w.window_start()));
    params.push_back(seconds(w.window_end()));
    params.push_back(std::to_string(now_unix));
    params.push_back(std::to_string(static_cast<int64_t>(w.request_count())));
    params.push_back(std::to_string(static_cast<int64_t>(errors)));
    params.push_back(absl::BytesToHexString(w.SerializeAsString()));
  }
  sql += " ON CONFLICT DO NOTHING RETURNING sequence";
  return internal::InTx(txn, absl::StrCat("store telemetry windows of device ", device_id),
                        [&](pqxx::work& tx) -> absl::StatusOr<std::vector<bool>> {
                          pqxx::result r = internal::ExecPrepared(
                              tx, absl::StrCat("telemetry_insert_", windows.size()), sql,
                              pqxx::prepare::make_dynamic_params(params));
                          // RETURNING names the rows stored now; of several copies of a sequence,
                          // the first.
                          std::map<int64_t, int> stored_now;
                          for (const auto& row : r) ++stored_now[row[0].as<int64_t>()];
                          std::vector<bool> stored;
                          stored.reserve(windows.size());
                          for (const v1::TelemetryWindow* w : windows) {
                            int& left = stored_now[static_cast<int64_t>(w->sequence())];
                            stored.push_back(left > 0);
                            if (left > 0) --left;
                          }
                          return stored;
                        });
}

namespace {

// Counts are unsigned on the wire and stored as bigint (CHECK >= 0): clamped, never wrapped.
int64_t ToBigint(uint64_t v) { return static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX)); }

TelemetryStore::DropRecord DropRecordFromRow(const pqxx::row& row) {
  auto u = [&](int i) { return static_cast<uint64_t>(row[i].as<int64_t>()); };
  return {.stream_id = u(0),
          .reported = {.outbox_full = u(1), .refused = u(2)},
          .total = {.outbox_full = u(3), .refused = u(4)}};
}

constexpr const char* kDropColumns =
    "stream_id, reported_outbox_full, reported_refused, total_outbox_full, total_refused";

}  // namespace

absl::StatusOr<TelemetryStore::DropRecord> TelemetryRepo::LockDrops(Tx& txn,
                                                                    const std::string& device_id) {
  return internal::InTx(
      txn, absl::StrCat("lock telemetry drops of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<DropRecord> {
        // The no-op update takes the row lock of an existing row; either way the row returned
        // is the one before this transaction's change.
        pqxx::result r = tx.exec_params(
            absl::StrCat("INSERT INTO telemetry_drops (device_id) "
                         "SELECT id FROM devices WHERE id = $1 "
                         "ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id "
                         "RETURNING ",
                         kDropColumns),
            device_id);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("no device ", device_id));
        return DropRecordFromRow(r[0]);
      });
}

absl::Status TelemetryRepo::SaveDrops(Tx& txn, const std::string& device_id,
                                      const DropRecord& record) {
  return internal::InTx(
      txn, absl::StrCat("save telemetry drops of device ", device_id),
      [&](pqxx::work& tx) -> absl::Status {
        pqxx::result r = tx.exec_params(
            "UPDATE telemetry_drops SET stream_id = $2, reported_outbox_full = $3, "
            "reported_refused = $4, total_outbox_full = $5, total_refused = $6, "
            "updated_at = now() WHERE device_id = $1",
            device_id, static_cast<int64_t>(record.stream_id),
            ToBigint(record.reported.outbox_full), ToBigint(record.reported.refused),
            ToBigint(record.total.outbox_full), ToBigint(record.total.refused));
        if (r.affected_rows() == 0) {
          return absl::NotFoundError(absl::StrCat("no telemetry drops of device ", device_id));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::optional<TelemetryStore::DropRecord>> TelemetryRepo::ReadDrops(
    Tx& txn, const std::string& device_id) {
  return internal::InTx(
      txn, absl::StrCat("read telemetry drops of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<DropRecord>> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kDropColumns, " FROM telemetry_drops WHERE device_id = $1"),
            device_id);
        if (r.empty()) return std::optional<DropRecord>();
        return std::optional<DropRecord>(DropRecordFromRow(r[0]));
      });
}

absl::StatusOr<int> TelemetryRepo::EnsurePartitions(Tx& txn, int64_t from_unix, int64_t to_unix) {
  return internal::InTx(txn, "create telemetry partitions",
                        [&](pqxx::work& tx) -> absl::StatusOr<int> {
                          return tx
                              .exec_params(
                                  "SELECT edgefleet_ensure_telemetry_partitions("
                                  "(to_timestamp($1) AT TIME ZONE 'UTC')::date, "
                                  "(to_timestamp($2) AT TIME ZONE 'UTC')::date)",
                                  from_unix, to_unix)[0][0]
                              .as<int>();
                        });
}

absl::StatusOr<int> TelemetryRepo::DropPartitionsBefore(Tx& txn, int64_t before_unix) {
  return internal::InTx(txn, "drop expired telemetry partitions",
                        [&](pqxx::work& tx) -> absl::StatusOr<int> {
                          return tx
                              .exec_params(
                                  "SELECT edgefleet_drop_telemetry_partitions("
                                  "(to_timestamp($1) AT TIME ZONE 'UTC')::date)",
                                  before_unix)[0][0]
                              .as<int>();
                        });
}

}  // namespace edgefleet::server
