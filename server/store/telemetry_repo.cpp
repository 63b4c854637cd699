#include "server/store/telemetry_repo.h"

#include "absl/strings/str_cat.h"
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
        pqxx::result device = tx.exec_params(
            "SELECT coalesce(labels->>'hw', '') FROM devices WHERE id = $1", device_id);
        if (device.empty()) return absl::NotFoundError(absl::StrCat("no device ", device_id));
        DeviceContext context{.hw = device[0][0].as<std::string>(), .model_names = {}};
        // Inventory is protobuf JSON with the proto's field names.
        pqxx::result models = tx.exec_params(
            "SELECT d.model_name FROM deployment_targets t "
            "JOIN deployments d ON d.id = t.deployment_id WHERE t.device_id = $1 "
            "UNION SELECT m->>'model_name' FROM devices dev, "
            "  jsonb_array_elements(CASE WHEN jsonb_typeof(dev.inventory->'models') = 'array' "
            "    THEN dev.inventory->'models' ELSE '[]'::jsonb END) m "
            "  WHERE dev.id = $1 AND m ? 'model_name'",
            device_id);
        for (const auto& row : models) context.model_names.insert(row[0].as<std::string>());
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

absl::StatusOr<bool> TelemetryRepo::InsertWindow(Tx& txn, const std::string& device_id,
                                                 uint64_t stream_id,
                                                 const v1::TelemetryWindow& window,
                                                 const std::string& hw, int64_t now_unix) {
  uint64_t errors = 0;
  for (const auto& e : window.errors()) errors += e.count();
  auto seconds = [](const google::protobuf::Timestamp& t) {
    return static_cast<double>(t.seconds()) + t.nanos() / 1e9;
  };
  return internal::InTx(
      txn, absl::StrCat("store telemetry window of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        // Ids are unsigned on the wire; stored as the same 64 bits in a bigint.
        pqxx::result r = tx.exec_params(
            "INSERT INTO telemetry_windows (device_id, stream_id, sequence, model_name, version, "
            "hw, window_start, window_end, received_at, request_count, error_count, summary) "
            "VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), to_timestamp($8), "
            "to_timestamp($9), $10, $11, $12) ON CONFLICT DO NOTHING",
            device_id, static_cast<int64_t>(stream_id), static_cast<int64_t>(window.sequence()),
            window.model_name(), window.version(), hw, seconds(window.window_start()),
            seconds(window.window_end()), now_unix, static_cast<int64_t>(window.request_count()),
            static_cast<int64_t>(errors), pqxx::binarystring(window.SerializeAsString()));
        return r.affected_rows() == 1;
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
