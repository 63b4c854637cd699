#include "server/store/inference_sample_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::InTx;

absl::StatusOr<std::vector<InferenceSampleSource::Canary>> InferenceSampleRepo::WaveCanaries(
    Tx& txn, int64_t deployment_id, uint32_t wave) {
  return InTx(txn,
              absl::StrCat("read the canaries of wave ", wave, " of deployment ", deployment_id),
              [&](pqxx::work& tx) -> absl::StatusOr<std::vector<Canary>> {
                pqxx::result rows = tx.exec_params(
                    "SELECT device_id, coalesce(previous_version, '') FROM deployment_targets "
                    "WHERE deployment_id = $1 AND wave = $2 AND state = 'serving' "
                    "AND rollback_metadata_version IS NULL ORDER BY device_id",
                    deployment_id, static_cast<int64_t>(wave));
                std::vector<Canary> canaries;
                canaries.reserve(rows.size());
                for (const auto& row : rows) {
                  canaries.push_back(Canary{row[0].as<std::string>(), row[1].as<std::string>()});
                }
                return canaries;
              });
}

absl::StatusOr<rollout::InferenceSide> InferenceSampleRepo::Sample(
    Tx& txn, const std::string& model_name, const std::string& version,
    const std::vector<std::string>& device_ids, int64_t from_unix, int64_t to_unix) {
  if (device_ids.empty() || from_unix >= to_unix) return rollout::InferenceSide{};
  return InTx(txn, absl::StrCat("read telemetry windows of ", model_name, " version ", version),
              [&](pqxx::work& tx) -> absl::StatusOr<rollout::InferenceSide> {
                pqxx::result rows = tx.exec_params(
                    "SELECT device_id, summary FROM telemetry_windows "
                    "WHERE model_name = $1 AND version = $2 AND window_start >= to_timestamp($3) "
                    "AND window_start < to_timestamp($4) AND device_id = ANY($5::text[])",
                    model_name, version, from_unix, to_unix,
                    internal::TextArrayLiteral(device_ids));
                rollout::InferenceSideBuilder side;
                for (const auto& row : rows) {
                  const std::string device = row[0].as<std::string>();
                  v1::TelemetryWindow window;
                  if (!window.ParseFromString(pqxx::binarystring(row[1]).str())) {
                    return absl::InternalError(absl::StrCat("a stored telemetry window of device ",
                                                            device, " does not parse"));
                  }
                  if (auto s = side.Add(device, window); !s.ok()) {
                    return absl::InternalError(std::string(s.message()));
                  }
                }
                return std::move(side).Finish();
              });
}

}  // namespace edgefleet::server
