#include "server/store/rollup_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {
namespace {

// Serializes roll-up runs across replicas ("rollup" in ASCII, distinct from the migration lock).
constexpr int64_t kRollupLockKey = 0x726f6c6c7570;

std::string Bytes(const pqxx::field& f) { return pqxx::binarystring(f).str(); }

}  // namespace

absl::StatusOr<std::optional<WindowClaim>> RollupRepo::ClaimNewWindows(Tx& txn,
                                                                       size_t max_windows) {
  return internal::InTx(
      txn, "claim telemetry windows to roll up",
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<WindowClaim>> {
        if (!tx.exec_params1("SELECT pg_try_advisory_xact_lock($1)", kRollupLockKey)[0]
                 .as<bool>()) {
          return std::nullopt;
        }
        // Before this transaction takes an id of its own (it writes later): every transaction
        // below the horizon has ended, so the windows below it are all visible from here on.
        const int64_t horizon =
            tx.exec1("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")[0]
                .as<int64_t>();
        WindowClaim claim;
        claim.from_xid = tx.exec1("SELECT next_xid FROM telemetry_rollup_watermark WHERE id = 1")[0]
                             .as<int64_t>();
        claim.to_xid = claim.from_xid;
        if (horizon <= claim.from_xid) return claim;
        constexpr const char* kColumns =
            "SELECT ingest_xid, model_name, version, hw, "
            "floor(extract(epoch FROM window_start))::bigint, summary FROM telemetry_windows ";
        pqxx::result rows = tx.exec_params(
            absl::StrCat(kColumns,
                         "WHERE ingest_xid >= $1 AND ingest_xid < $2 ORDER BY ingest_xid LIMIT $3"),
            claim.from_xid, horizon, static_cast<int64_t>(max_windows) + 1);
        claim.to_xid = horizon;
        size_t take = rows.size();
        if (rows.size() > max_windows) {
          // Stop at a transaction boundary: the windows of the first id past the limit wait.
          const int64_t cut = rows[max_windows][0].as<int64_t>();
          take = max_windows;
          while (take > 0 && rows[take - 1][0].as<int64_t>() == cut) --take;
          claim.to_xid = cut;
          if (take == 0) {
            // One transaction stored more than max_windows: take all of it.
            rows = tx.exec_params(absl::StrCat(kColumns, "WHERE ingest_xid = $1"), cut);
            take = rows.size();
            claim.to_xid = cut + 1;
          }
        }
        claim.windows.reserve(take);
        for (size_t i = 0; i < take; ++i) {
          const pqxx::row& row = rows[i];
          claim.windows.push_back(NewWindow{.model_name = row[1].as<std::string>(),
                                            .version = row[2].as<std::string>(),
                                            .hw = row[3].as<std::string>(),
                                            .window_start_unix = row[4].as<int64_t>(),
                                            .summary = Bytes(row[5])});
        }
        return claim;
      });
}

absl::Status RollupRepo::AppendRollups(Tx& txn, const WindowClaim& claim,
                                       const std::vector<RollupRow>& rows) {
  absl::Status status =
      internal::InTx(txn, "store telemetry roll-ups", [&](pqxx::work& tx) -> absl::Status {
        for (const RollupRow& r : rows) {
          tx.exec_params(
              "INSERT INTO telemetry_rollups (model_name, version, hw, profile_sha256, "
              "bucket_start, windows, requests, errors, summary) "
              "VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7, $8, $9)",
              r.model_name, r.version, r.hw, pqxx::binarystring(r.profile_sha256),
              r.bucket_start_unix, static_cast<int64_t>(r.windows),
              static_cast<int64_t>(r.requests), static_cast<int64_t>(r.errors),
              pqxx::binarystring(r.summary));
        }
        pqxx::result moved = tx.exec_params(
            "UPDATE telemetry_rollup_watermark SET next_xid = $2, updated_at = now() "
            "WHERE id = 1 AND next_xid = $1",
            claim.from_xid, claim.to_xid);
        if (moved.affected_rows() != 1) {
          return absl::AbortedError(
              absl::StrCat("the telemetry roll-up watermark moved from ", claim.from_xid,
                           " while this run rolled up windows: another run took them"));
        }
        return absl::OkStatus();
      });
  // An aborted claim must not commit its roll-up rows.
  if (absl::IsAborted(status)) return internal::MarkFailed(txn, status);
  return status;
}

absl::StatusOr<std::vector<RollupRow>> RollupRepo::ReadRollups(Tx& txn,
                                                               const std::string& model_name,
                                                               const std::string& version,
                                                               const std::optional<std::string>& hw,
                                                               int64_t from_unix, int64_t to_unix) {
  return internal::InTx(
      txn, absl::StrCat("read roll-ups of ", model_name, " ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<RollupRow>> {
        const std::string sql = absl::StrCat(
            "SELECT hw, profile_sha256, floor(extract(epoch FROM bucket_start))::bigint, windows, "
            "requests, errors, summary FROM telemetry_rollups WHERE model_name = $1 AND "
            "version = $2 AND bucket_start >= to_timestamp($3) AND bucket_start < to_timestamp($4)",
            hw.has_value() ? " AND hw = $5" : "", " ORDER BY bucket_start, id");
        pqxx::result r = hw.has_value()
                             ? tx.exec_params(sql, model_name, version, from_unix, to_unix, *hw)
                             : tx.exec_params(sql, model_name, version, from_unix, to_unix);
        std::vector<RollupRow> rows;
        rows.reserve(r.size());
        for (const pqxx::row& row : r) {
          rows.push_back(RollupRow{.model_name = model_name,
                                   .version = version,
                                   .hw = row[0].as<std::string>(),
                                   .profile_sha256 = Bytes(row[1]),
                                   .bucket_start_unix = row[2].as<int64_t>(),
                                   .windows = row[3].as<uint64_t>(),
                                   .requests = row[4].as<uint64_t>(),
                                   .errors = row[5].as<uint64_t>(),
                                   .summary = Bytes(row[6])});
        }
        return rows;
      });
}

absl::StatusOr<std::vector<DevicesReporting>> RollupRepo::CountDevicesReporting(
    Tx& txn, int64_t since_unix) {
  return internal::InTx(
      txn, "count devices reporting telemetry",
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<DevicesReporting>> {
        // The groups come from the (small) roll-up table; each count is then a probe of the
        // windows' (model_name, version, window_start) index.
        pqxx::result r = tx.exec_params(
            "SELECT g.model_name, g.version, g.hw, (SELECT count(DISTINCT w.device_id) "
            "  FROM telemetry_windows w WHERE w.model_name = g.model_name AND "
            "  w.version = g.version AND w.hw = g.hw AND w.window_start >= to_timestamp($1)) "
            "FROM (SELECT DISTINCT model_name, version, hw FROM telemetry_rollups "
            "  WHERE bucket_start >= to_timestamp($1) - interval '1 minute') g "
            "ORDER BY 1, 2, 3",
            since_unix);
        std::vector<DevicesReporting> out;
        for (const pqxx::row& row : r) {
          out.push_back(DevicesReporting{.model_name = row[0].as<std::string>(),
                                         .version = row[1].as<std::string>(),
                                         .hw = row[2].as<std::string>(),
                                         .devices = row[3].as<uint64_t>()});
        }
        return out;
      });
}

absl::StatusOr<int64_t> RollupRepo::DeleteRollupsBefore(Tx& txn, int64_t before_unix) {
  return internal::InTx(txn, "delete expired telemetry roll-ups",
                        [&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
                          return static_cast<int64_t>(
                              tx.exec_params("DELETE FROM telemetry_rollups WHERE bucket_start < "
                                             "to_timestamp($1)",
                                             before_unix)
                                  .affected_rows());
                        });
}

absl::StatusOr<std::vector<DeviceWindowRow>> RollupRepo::ReadDeviceWindows(
    Tx& txn, const std::string& device_id, const std::optional<std::string>& model_name,
    int64_t from_unix, int64_t to_unix, size_t limit) {
  return internal::InTx(
      txn, absl::StrCat("read telemetry windows of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<DeviceWindowRow>> {
        const std::string sql = absl::StrCat(
            "SELECT model_name, version, floor(extract(epoch FROM window_start))::bigint, "
            "floor(extract(epoch FROM window_end))::bigint, "
            "floor(extract(epoch FROM received_at))::bigint, summary FROM telemetry_windows "
            "WHERE device_id = $1 AND window_start >= to_timestamp($2) AND "
            "window_start < to_timestamp($3)",
            model_name.has_value() ? " AND model_name = $5" : "",
            " ORDER BY window_start DESC, model_name, version LIMIT $4");
        const auto n = static_cast<int64_t>(limit);
        pqxx::result r = model_name.has_value()
                             ? tx.exec_params(sql, device_id, from_unix, to_unix, n, *model_name)
                             : tx.exec_params(sql, device_id, from_unix, to_unix, n);
        std::vector<DeviceWindowRow> out;
        for (const pqxx::row& row : r) {
          out.push_back(DeviceWindowRow{.model_name = row[0].as<std::string>(),
                                        .version = row[1].as<std::string>(),
                                        .window_start_unix = row[2].as<int64_t>(),
                                        .window_end_unix = row[3].as<int64_t>(),
                                        .received_at_unix = row[4].as<int64_t>(),
                                        .summary = Bytes(row[5])});
        }
        return out;
      });
}

}  // namespace edgefleet::server
