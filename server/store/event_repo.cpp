#include "server/store/event_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

namespace {
constexpr absl::string_view kKindPrefix = "UPDATE_EVENT_KIND_";
constexpr absl::string_view kReasonPrefix = "FAILURE_REASON_";
}  // namespace

absl::Status EventRepo::Insert(Tx& txn, const std::string& device_id, const v1::UpdateEvent& event,
                               int64_t now_unix) {
  const int64_t occurred = event.has_occurred_at() ? event.occurred_at().seconds() : now_unix;
  return internal::InTx(
      txn, absl::StrCat("store update event of device ", device_id), [&](pqxx::work& tx) {
        tx.exec_params(
            "INSERT INTO device_events (device_id, model_name, version, kind, reason, detail, "
            "occurred_at, received_at) VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), "
            "to_timestamp($8))",
            device_id, event.model_name(), event.version(),
            internal::ToDb(event.kind(), kKindPrefix),
            internal::ToDb(event.reason(), kReasonPrefix), event.detail(), occurred, now_unix);
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<v1::UpdateEvent>> EventRepo::ListForDevice(const std::string& device_id,
                                                                      int limit) {
  return internal::WithTransaction(
      db_, absl::StrCat("list update events of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::UpdateEvent>> {
        std::vector<v1::UpdateEvent> events;
        pqxx::result r = tx.exec_params(
            "SELECT model_name, version, kind, reason, detail, "
            "floor(extract(epoch FROM occurred_at))::bigint FROM device_events "
            "WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
            device_id, std::max(0, limit));
        for (const pqxx::row& row : r) {
          v1::UpdateEvent& e = events.emplace_back();
          e.set_model_name(row[0].as<std::string>());
          e.set_version(row[1].as<std::string>());
          e.set_kind(internal::FromDb<v1::UpdateEventKind>(row[2].as<std::string>(), kKindPrefix));
          e.set_reason(
              internal::FromDb<v1::FailureReason>(row[3].as<std::string>(), kReasonPrefix));
          e.set_detail(row[4].as<std::string>());
          *e.mutable_occurred_at() = internal::UnixToTimestamp(row[5].as<int64_t>());
        }
        return events;
      });
}

}  // namespace edgefleet::server
