#include "server/store/drift_threshold_repo.h"

#include "server/store/internal/transaction.h"

namespace edgefleet::server {

namespace {

constexpr char kColumns[] =
    "model_name, warn, alert, min_samples, floor(extract(epoch FROM updated_at))::bigint";

DriftThresholdRecord RecordFromRow(const pqxx::row& row) {
  DriftThresholdRecord record;
  record.model_name = row[0].as<std::string>();
  record.thresholds.warn = row[1].as<double>();
  record.thresholds.alert = row[2].as<double>();
  record.thresholds.min_samples = row[3].as<uint64_t>();
  record.updated_at_unix = row[4].as<int64_t>();
  return record;
}

}  // namespace

absl::StatusOr<std::optional<DriftThresholdRecord>> DriftThresholdRepo::Get(
    Tx& txn, const std::string& model_name) {
  return internal::InTx(
      txn, "read drift thresholds of '" + model_name + "'",
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<DriftThresholdRecord>> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kColumns, " FROM model_drift_thresholds WHERE model_name = $1"),
            model_name);
        if (r.empty()) return std::nullopt;
        return RecordFromRow(r[0]);
      });
}

absl::StatusOr<DriftThresholdRecord> DriftThresholdRepo::Set(
    Tx& txn, const std::string& model_name, const edgefleet::telemetry::DriftThresholds& thresholds,
    const std::string& updated_by, int64_t now_unix) {
  return internal::InTx(
      txn, "set drift thresholds of '" + model_name + "'",
      [&](pqxx::work& tx) -> absl::StatusOr<DriftThresholdRecord> {
        // The model's row: NotFound (a foreign key violation) would abort the transaction, so
        // ask first and keep it usable for the caller's audit row.
        if (tx.exec_params("SELECT 1 FROM models WHERE name = $1", model_name).empty()) {
          return absl::NotFoundError("no such model '" + model_name + "'");
        }
        pqxx::result r = tx.exec_params(
            absl::StrCat("INSERT INTO model_drift_thresholds (model_name, warn, alert, "
                         "min_samples, updated_at, updated_by) "
                         "VALUES ($1, $2, $3, $4, to_timestamp($5), $6) "
                         "ON CONFLICT (model_name) DO UPDATE SET warn = EXCLUDED.warn, "
                         "alert = EXCLUDED.alert, min_samples = EXCLUDED.min_samples, "
                         "updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by "
                         "RETURNING ",
                         kColumns),
            model_name, thresholds.warn, thresholds.alert,
            static_cast<int64_t>(thresholds.min_samples), now_unix, updated_by);
        return RecordFromRow(r[0]);
      });
}

}  // namespace edgefleet::server
