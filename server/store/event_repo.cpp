#include "server/store/event_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

namespace {
constexpr absl::string_view kKindPrefix = "UPDATE_EVENT_KIND_";
constexpr absl::string_view kReasonPrefix = "FAILURE_REASON_";
}  // namespace

absl::Status EventRepo::InsertAll(Tx& txn, const std::string& device_id,
                                  std::span<const v1::UpdateEvent* const> events,
                                  int64_t now_unix) {
  if (events.empty()) return absl::OkStatus();
  // One prepared statement for the whole report, its columns as arrays: a statement per event
  // cost a round trip and a plan each. WITH ORDINALITY keeps the report's order in the ids.
  std::vector<std::string> models, versions, kinds, reasons, details, occurred;
  for (const v1::UpdateEvent* event : events) {
    models.push_back(event->model_name());
    versions.push_back(event->version());
    kinds.push_back(internal::ToDb(event->kind(), kKindPrefix));
    reasons.push_back(internal::ToDb(event->reason(), kReasonPrefix));
    details.push_back(event->detail());
    occurred.push_back(
        std::to_string(event->has_occurred_at() ? event->occurred_at().seconds() : now_unix));
  }
  return internal::InTx(
      txn, absl::StrCat("store update events of device ", device_id), [&](pqxx::work& tx) {
        internal::ExecPrepared(
            tx, "device_events_insert",
            "INSERT INTO device_events (device_id, model_name, version, kind, reason, detail, "
            "occurred_at, received_at) SELECT $1, e.model_name, e.version, e.kind, e.reason, "
            "e.detail, to_timestamp(e.occurred), to_timestamp($8) FROM unnest($2::text[], "
            "$3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) WITH ORDINALITY "
            "AS e(model_name, version, kind, reason, detail, occurred, n) ORDER BY e.n",
            device_id, internal::TextArrayLiteral(models), internal::TextArrayLiteral(versions),
            internal::TextArrayLiteral(kinds), internal::TextArrayLiteral(reasons),
            internal::TextArrayLiteral(details), internal::TextArrayLiteral(occurred), now_unix);
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
