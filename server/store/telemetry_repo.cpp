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

}  // namespace edgefleet::server
