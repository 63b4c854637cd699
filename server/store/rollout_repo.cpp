#include "server/store/rollout_repo.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/core/clock.h"
#include "common/core/labels.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rollouts.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::InTx;

namespace {

constexpr absl::string_view kRolloutPrefix = "ROLLOUT_STATE_";
constexpr absl::string_view kEventPrefix = "ROLLOUT_EVENT_KIND_";

constexpr const char* kRolloutColumns =
    "r.name, r.deployment_id, r.definition::text, r.state, r.current_wave, "
    "extract(epoch FROM r.wave_started_at)::bigint, extract(epoch FROM r.soak_started_at)::bigint, "
    "r.promote_requested, r.matching_devices, r.description, r.created_by, "
    "extract(epoch FROM r.created_at)::bigint, extract(epoch FROM r.updated_at)::bigint, "
    "extract(epoch FROM r.finished_at)::bigint, d.metadata_version "
    "FROM rollouts r JOIN deployments d ON d.id = r.deployment_id";

std::optional<Clock::TimePoint> OptionalTime(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return FromUnixSeconds(field.as<int64_t>());
}

absl::StatusOr<StoredRollout> RolloutFromRow(const pqxx::row& row) {
  StoredRollout out;
  if (auto s = internal::MessageFromJson(row[2].as<std::string>(), &out.rollout); !s.ok()) {
    return absl::InternalError(absl::StrCat("stored rollout ", row[0].as<std::string>(),
                                            " has a bad definition: ", s.message()));
  }
  v1::Rollout& r = out.rollout;
  r.set_name(row[0].as<std::string>());
  out.deployment_id = row[1].as<int64_t>();
  out.progress.state = internal::FromDb<v1::RolloutState>(row[3].as<std::string>(), kRolloutPrefix);
  out.progress.current_wave = row[4].as<size_t>();
  out.progress.wave_started_at = OptionalTime(row[5]);
  out.progress.soak_started_at = OptionalTime(row[6]);
  out.progress.promote_requested = row[7].as<bool>();
  r.set_state(out.progress.state);
  r.set_current_wave(static_cast<uint32_t>(out.progress.current_wave));
  r.set_promote_requested(out.progress.promote_requested);
  r.set_matching_devices(row[8].as<uint64_t>());
  r.set_description(row[9].as<std::string>());
  r.set_created_by(row[10].as<std::string>());
  *r.mutable_created_at() = internal::UnixToTimestamp(row[11].as<int64_t>());
  *r.mutable_updated_at() = internal::UnixToTimestamp(row[12].as<int64_t>());
  if (!row[13].is_null()) {
    *r.mutable_finished_at() = internal::UnixToTimestamp(row[13].as<int64_t>());
  } else {
    r.clear_finished_at();
  }
  r.set_metadata_version(row[14].as<uint64_t>());
  return out;
}

absl::Status NotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("rollout ", name, " not found"));
}

bool Finished(v1::RolloutState state) {
  return state == v1::ROLLOUT_STATE_SUCCEEDED || state == v1::ROLLOUT_STATE_ABORTED ||
         state == v1::ROLLOUT_STATE_ROLLED_BACK;
}

std::optional<int64_t> UnixOf(const std::optional<Clock::TimePoint>& t) {
  if (!t.has_value()) return std::nullopt;
  return ToUnixSeconds(*t);
}

std::map<std::string, uint64_t> CountsOf(const pqxx::result& rows) {
  std::map<std::string, uint64_t> out;
  for (const pqxx::row& row : rows) out[row[0].as<std::string>()] = row[1].as<uint64_t>();
  return out;
}

}  // namespace

namespace internal {

absl::StatusOr<StoredRollout> InsertRollout(pqxx::work& tx, const v1::Rollout& definition,
                                            const std::string& created_by, int64_t now_unix,
                                            std::optional<int64_t> deployment_id) {
  auto selector = ParseLabelSelector(definition.label_selector());
  if (!selector.ok()) return selector.status();
  if (!tx.exec_params("SELECT 1 FROM rollouts WHERE name = $1", definition.name()).empty()) {
    return absl::AlreadyExistsError(absl::StrCat("rollout ", definition.name(), " already exists"));
  }
  if (tx.exec_params("SELECT 1 FROM model_versions WHERE model_name = $1 AND version = $2",
                     definition.model_name(), definition.version())
          .empty()) {
    return absl::NotFoundError(absl::StrCat("model ", definition.model_name(), " version ",
                                            definition.version(), " not found"));
  }
  // The deployment's metadata_version comes from release_metadata_version_seq (its default).
  const int64_t id =
      tx.exec_params1(
            "INSERT INTO deployments (id, model_name, version, selector, label_selector, "
            "created_at, capture) VALUES (coalesce($1, nextval(pg_get_serial_sequence("
            "'deployments', 'id'))), $2, $3, $4::jsonb, $5, to_timestamp($6), "
            "CASE WHEN $8 THEN $7::bytea END) RETURNING id",
            deployment_id, definition.model_name(), definition.version(), LabelsToJson(*selector),
            definition.label_selector(), now_unix,
            pqxx::binarystring(definition.capture().SerializeAsString()),
            definition.capture().enabled())[0]
          .as<int64_t>();
  v1::Rollout spec = definition;
  spec.clear_events();
  tx.exec_params(
      "INSERT INTO rollouts (name, deployment_id, definition, state, description, created_by, "
      "created_at, updated_at) VALUES ($1, $2, $3::jsonb, 'pending', $4, $5, to_timestamp($6), "
      "to_timestamp($6))",
      definition.name(), id, MessageToJson(spec), definition.description(), created_by, now_unix);
  return RolloutFromRow(tx.exec_params1(
      absl::StrCat("SELECT ", kRolloutColumns, " WHERE r.name = $1"), definition.name()));
}

}  // namespace internal

absl::StatusOr<StoredRollout> RolloutRepo::Insert(Tx& txn, const v1::Rollout& definition,
                                                  const std::string& created_by, int64_t now_unix) {
  return InTx(txn, absl::StrCat("create rollout ", definition.name()), [&](pqxx::work& tx) {
    return internal::InsertRollout(tx, definition, created_by, now_unix, std::nullopt);
  });
}

absl::StatusOr<std::optional<StoredRollout>> RolloutRepo::Lock(Tx& txn, const std::string& name,
                                                               bool skip_locked) {
  return InTx(txn, absl::StrCat("lock rollout ", name),
              [&](pqxx::work& tx) -> absl::StatusOr<std::optional<StoredRollout>> {
                pqxx::result rows = tx.exec_params(
                    absl::StrCat("SELECT ", kRolloutColumns, " WHERE r.name = $1 FOR UPDATE OF r",
                                 skip_locked ? " SKIP LOCKED" : ""),
                    name);
                if (rows.empty()) {
                  if (skip_locked &&
                      !tx.exec_params("SELECT 1 FROM rollouts WHERE name = $1", name).empty()) {
                    return std::optional<StoredRollout>();  // another transaction holds it
                  }
                  return NotFound(name);
                }
                auto stored = RolloutFromRow(rows[0]);
                if (!stored.ok()) return stored.status();
                return std::optional<StoredRollout>(*std::move(stored));
              });
}

absl::StatusOr<StoredRollout> RolloutRepo::Find(Tx& txn, const std::string& name) {
  return InTx(txn, absl::StrCat("read rollout ", name),
              [&](pqxx::work& tx) -> absl::StatusOr<StoredRollout> {
                pqxx::result rows = tx.exec_params(
                    absl::StrCat("SELECT ", kRolloutColumns, " WHERE r.name = $1"), name);
                if (rows.empty()) return NotFound(name);
                return RolloutFromRow(rows[0]);
              });
}

absl::StatusOr<Page<StoredRollout>> RolloutRepo::ListPage(Tx& txn, const PageRequest& page) {
  return InTx(txn, "list a page of rollouts",
              [&](pqxx::work& tx) -> absl::StatusOr<Page<StoredRollout>> {
                std::vector<StoredRollout> rows;
                for (const pqxx::row& row :
                     tx.exec_params(absl::StrCat("SELECT ", kRolloutColumns,
                                                 " WHERE r.name > $1 ORDER BY r.name LIMIT $2"),
                                    page.after, static_cast<int64_t>(page.size + 1))) {
                  auto stored = RolloutFromRow(row);
                  if (!stored.ok()) return stored.status();
                  rows.push_back(*std::move(stored));
                }
                return FinishPage(std::move(rows), page.size,
                                  [](const StoredRollout& r) { return r.rollout.name(); });
              });
}

absl::StatusOr<RolloutsToEvaluate> RolloutRepo::NamesToEvaluate(Tx& txn, size_t max_placements) {
  return InTx(
      txn, "list rollouts to evaluate", [&](pqxx::work& tx) -> absl::StatusOr<RolloutsToEvaluate> {
        RolloutsToEvaluate out;
        std::set<std::string> names;
        // The controller's every pass, and the placement read for each enrollment:
        // prepared.
        for (const pqxx::row& row : internal::ExecPrepared(
                 tx, "rollouts_to_evaluate",
                 "SELECT name FROM rollouts WHERE state IN ('pending', 'running')")) {
          names.insert(row[0].as<std::string>());
        }
        for (const pqxx::row& row :
             internal::ExecPrepared(tx, "placement_queue_head",
                                    "SELECT id FROM device_placement_queue ORDER BY id LIMIT $1",
                                    static_cast<int64_t>(max_placements))) {
          out.placements.push_back(row[0].as<int64_t>());
        }
        if (!out.placements.empty()) {
          std::vector<std::string> ids;
          for (int64_t id : out.placements) ids.push_back(std::to_string(id));
          // An older succeeded rollout of the same model and selector never gets a device
          // its newer one would take (MatchingDevices leaves it out), so only the newest is
          // asked.
          for (const pqxx::row& row : internal::ExecPrepared(
                   tx, "rollouts_for_placements",
                   "SELECT DISTINCT r.name FROM devices dev "
                   "JOIN deployments d ON dev.labels @> d.selector "
                   "JOIN rollouts r ON r.deployment_id = d.id AND r.state = 'succeeded' "
                   "WHERE dev.status = 'active' AND dev.id IN (SELECT q.device_id FROM "
                   "device_placement_queue q WHERE q.id IN (SELECT "
                   "jsonb_array_elements_text($1::jsonb)::bigint)) "
                   "AND NOT EXISTS (SELECT 1 FROM deployments nd JOIN rollouts nr "
                   "ON nr.deployment_id = nd.id AND nr.state = 'succeeded' "
                   "WHERE nd.model_name = d.model_name AND nd.selector = d.selector "
                   "AND nd.id > d.id)",
                   internal::StringsToJson(ids))) {
            names.insert(row[0].as<std::string>());
          }
        }
        out.names.assign(names.begin(), names.end());
        return out;
      });
}

absl::Status RolloutRepo::ForgetPlacements(Tx& txn, const std::vector<int64_t>& placements) {
  if (placements.empty()) return absl::OkStatus();
  return InTx(txn, "forget device placements", [&](pqxx::work& tx) -> absl::Status {
    std::vector<std::string> ids;
    for (int64_t id : placements) ids.push_back(std::to_string(id));
    internal::ExecPrepared(tx, "placement_queue_forget",
                           "DELETE FROM device_placement_queue WHERE id IN (SELECT "
                           "jsonb_array_elements_text($1::jsonb)::bigint)",
                           internal::StringsToJson(ids));
    return absl::OkStatus();
  });
}

absl::Status RolloutRepo::SaveProgress(Tx& txn, const std::string& name,
                                       const rollout::RolloutProgress& progress,
                                       uint64_t matching_devices, int64_t now_unix) {
  return InTx(txn, absl::StrCat("save progress of rollout ", name),
              [&](pqxx::work& tx) -> absl::Status {
                pqxx::result updated = tx.exec_params(
                    "UPDATE rollouts SET state = $2, current_wave = $3, "
                    "wave_started_at = to_timestamp($4), soak_started_at = to_timestamp($5), "
                    "promote_requested = $6, matching_devices = $7, updated_at = to_timestamp($8), "
                    "finished_at = CASE WHEN $9 THEN coalesce(finished_at, to_timestamp($8)) "
                    "ELSE NULL END WHERE name = $1 RETURNING 1",
                    name, internal::ToDb(progress.state, kRolloutPrefix),
                    static_cast<int64_t>(progress.current_wave), UnixOf(progress.wave_started_at),
                    UnixOf(progress.soak_started_at), progress.promote_requested,
                    static_cast<int64_t>(matching_devices), now_unix, Finished(progress.state));
                if (updated.empty()) return NotFound(name);
                return absl::OkStatus();
              });
}

absl::Status RolloutRepo::AddEvent(Tx& txn, const std::string& name,
                                   const v1::RolloutEvent& event) {
  return InTx(
      txn, absl::StrCat("record an event of rollout ", name), [&](pqxx::work& tx) -> absl::Status {
        tx.exec_params(
            "INSERT INTO rollout_events (rollout_name, kind, wave, event, at) "
            "VALUES ($1, $2, $3, $4::jsonb, to_timestamp($5))",
            name, internal::ToDb(event.kind(), kEventPrefix), static_cast<int64_t>(event.wave()),
            internal::MessageToJson(event), event.at().seconds());
        return absl::OkStatus();
      });
}

namespace {

absl::StatusOr<std::vector<v1::RolloutEvent>> LoadEvents(pqxx::work& tx, const std::string& name,
                                                         bool last_only) {
  std::vector<v1::RolloutEvent> events;
  for (const pqxx::row& row :
       tx.exec_params(last_only ? "SELECT event::text FROM rollout_events WHERE rollout_name = $1 "
                                  "ORDER BY id DESC LIMIT 1"
                                : "SELECT event::text FROM rollout_events WHERE rollout_name = $1 "
                                  "ORDER BY id",
                      name)) {
    v1::RolloutEvent event;
    if (auto s = internal::MessageFromJson(row[0].as<std::string>(), &event); !s.ok()) {
      return absl::InternalError(
          absl::StrCat("stored event of rollout ", name, " is bad: ", s.message()));
    }
    events.push_back(std::move(event));
  }
  return events;
}

}  // namespace

absl::StatusOr<std::vector<v1::RolloutEvent>> RolloutRepo::Events(Tx& txn,
                                                                  const std::string& name) {
  return InTx(txn, absl::StrCat("read events of rollout ", name),
              [&](pqxx::work& tx) { return LoadEvents(tx, name, false); });
}

absl::StatusOr<std::optional<v1::RolloutEvent>> RolloutRepo::LastEvent(Tx& txn,
                                                                       const std::string& name) {
  return InTx(txn, absl::StrCat("read the last event of rollout ", name),
              [&](pqxx::work& tx) -> absl::StatusOr<std::optional<v1::RolloutEvent>> {
                auto events = LoadEvents(tx, name, true);
                if (!events.ok()) return events.status();
                if (events->empty()) return std::optional<v1::RolloutEvent>();
                return std::optional<v1::RolloutEvent>(std::move(events->front()));
              });
}

absl::StatusOr<std::vector<rollout::WaveCounts>> RolloutRepo::CountWaves(
    Tx& txn, int64_t deployment_id, const std::vector<std::chrono::seconds>& serving_timeouts,
    int64_t now_unix) {
  return InTx(txn, absl::StrCat("count the targets of deployment ", deployment_id),
              [&](pqxx::work& tx) -> absl::StatusOr<std::vector<rollout::WaveCounts>> {
                std::vector<rollout::WaveCounts> counts(serving_timeouts.size());
                std::vector<std::string> timeouts;
                for (const auto& t : serving_timeouts)
                  timeouts.push_back(std::to_string(t.count()));
                // Outcome per target: serving, refused, probation, install (failed), timed_out,
                // waiting.
                pqxx::result rows = tx.exec_params(
                    "SELECT t.wave, CASE "
                    "WHEN t.state = 'serving' THEN 'serving' "
                    "WHEN t.state = 'rolled_back' THEN 'rolled_back' "
                    "WHEN t.state = 'failed' AND t.reason IN ('FAILURE_REASON_SIGNATURE', "
                    "'FAILURE_REASON_EXPIRED', 'FAILURE_REASON_ROLLBACK', 'FAILURE_REASON_NAME') "
                    "THEN 'refused' "
                    "WHEN t.state = 'failed' AND t.reason = 'FAILURE_REASON_PROBATION_FAILED' "
                    "THEN 'probation' "
                    "WHEN t.state = 'failed' THEN 'install' "
                    "WHEN t.targeted_at <= to_timestamp($2) - make_interval(secs => "
                    "coalesce(($3::jsonb ->> t.wave)::bigint, 0)) THEN 'timed_out' "
                    "ELSE 'waiting' END AS outcome, count(*) FROM deployment_targets t "
                    "WHERE t.deployment_id = $1 AND t.state <> 'superseded' "
                    "GROUP BY 1, 2",
                    deployment_id, now_unix, internal::StringsToJson(timeouts));
                for (const pqxx::row& row : rows) {
                  const auto wave = row[0].as<size_t>();
                  if (wave >= counts.size()) continue;
                  rollout::WaveCounts& c = counts[wave];
                  const std::string outcome = row[1].as<std::string>();
                  const uint64_t n = row[2].as<uint64_t>();
                  c.targeted += n;
                  if (outcome == "serving") c.serving += n;
                  if (outcome == "rolled_back") c.rolled_back += n;
                  if (outcome == "refused") c.refused += n;
                  if (outcome == "probation") c.probation_failed += n;
                  if (outcome == "install") c.install_failed += n;
                  if (outcome == "timed_out") c.timed_out += n;
                }
                return counts;
              });
}

absl::StatusOr<std::vector<rollout::MatchingDevice>> RolloutRepo::MatchingDevices(
    Tx& txn, int64_t deployment_id) {
  return InTx(txn, absl::StrCat("find the devices deployment ", deployment_id, " matches"),
              [&](pqxx::work& tx) -> absl::StatusOr<std::vector<rollout::MatchingDevice>> {
                std::vector<rollout::MatchingDevice> devices;
                for (const pqxx::row& row : tx.exec_params(
                         "SELECT dev.id, coalesce(dev.labels ->> 'hw', ''), EXISTS (SELECT 1 "
                         "FROM deployment_targets t WHERE t.deployment_id = d.id AND "
                         "t.device_id = dev.id) FROM deployments d JOIN devices dev ON "
                         "dev.status = 'active' AND dev.labels @> d.selector WHERE d.id = $1 "
                         "AND NOT EXISTS (SELECT 1 FROM deployment_targets n JOIN deployments nd "
                         "ON nd.id = n.deployment_id WHERE n.device_id = dev.id AND "
                         "nd.model_name = d.model_name AND nd.id > d.id AND "
                         "n.state <> 'superseded') ORDER BY dev.id",
                         deployment_id)) {
                  devices.push_back(rollout::MatchingDevice{
                      row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<bool>()});
                }
                return devices;
              });
}

absl::Status RolloutRepo::Assign(Tx& txn, int64_t deployment_id, uint32_t wave,
                                 const std::vector<std::string>& device_ids, int64_t now_unix) {
  if (device_ids.empty()) return absl::OkStatus();
  return InTx(
      txn, absl::StrCat("assign devices to wave ", wave, " of deployment ", deployment_id),
      [&](pqxx::work& tx) -> absl::Status {
        const std::string ids = internal::StringsToJson(device_ids);
        // A device whose inventory already reports the version serving is SERVING at once (no
        // event would come). The version each device runs now: its latest live target of the
        // same model (rolled back targets send it to their previous version). Joins, not a
        // subquery per device: those took 15 s for 20,000 devices, growing faster than the
        // count (bench/fleet).
        tx.exec_params(
            "WITH d AS (SELECT model_name, version FROM deployments WHERE id = $1), "
            "ids AS MATERIALIZED (SELECT DISTINCT dev_id "
            "FROM jsonb_array_elements_text($3::jsonb) AS dev_id), "
            "previous AS MATERIALIZED (SELECT DISTINCT ON (o.device_id) o.device_id, "
            "CASE WHEN o.rollback_metadata_version IS NOT NULL THEN o.previous_version "
            "ELSE od.version END AS version "
            "FROM deployment_targets o JOIN deployments od ON od.id = o.deployment_id "
            "JOIN d ON od.model_name = d.model_name JOIN ids ON ids.dev_id = o.device_id "
            "WHERE od.id <> $1 AND o.state <> 'superseded' ORDER BY o.device_id, od.id DESC) "
            "INSERT INTO deployment_targets (deployment_id, device_id, state, wave, targeted_at, "
            "updated_at, previous_version) "
            "SELECT $1, dev.id, CASE WHEN EXISTS (SELECT 1 FROM inventory_models(dev.inventory) m "
            "WHERE m.model_name = d.model_name AND m.version = d.version "
            "AND m.state = 'MODEL_STATE_SERVING') THEN 'serving' ELSE 'pending' END, "
            "$2, to_timestamp($4), to_timestamp($4), previous.version "
            "FROM ids JOIN devices dev ON dev.id = ids.dev_id CROSS JOIN d "
            "LEFT JOIN previous ON previous.device_id = dev.id "
            "ON CONFLICT (deployment_id, device_id) DO NOTHING",
            deployment_id, static_cast<int64_t>(wave), ids, now_unix);
        tx.exec_params(
            "UPDATE deployment_targets t SET state = 'superseded', updated_at = to_timestamp($3) "
            "FROM deployments od, deployments d WHERE d.id = $1 AND t.deployment_id = od.id "
            "AND od.model_name = d.model_name AND od.id < $1 AND t.state <> 'superseded' "
            "AND t.device_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
            deployment_id, ids, now_unix);
        return absl::OkStatus();
      });
}

absl::StatusOr<uint64_t> RolloutRepo::RollBack(Tx& txn, int64_t deployment_id, int64_t now_unix) {
  return InTx(
      txn, absl::StrCat("roll back deployment ", deployment_id),
      [&](pqxx::work& tx) -> absl::StatusOr<uint64_t> {
        // One new release for the roll back: every target sent back carries it.
        pqxx::result rows = tx.exec_params(
            "WITH release AS (SELECT nextval('release_metadata_version_seq') AS v) "
            "UPDATE deployment_targets SET rollback_metadata_version = (SELECT v FROM release), "
            "updated_at = to_timestamp($2) WHERE deployment_id = $1 "
            "AND state <> 'superseded' AND rollback_metadata_version IS NULL RETURNING 1",
            deployment_id, now_unix);
        return static_cast<uint64_t>(rows.size());
      });
}

absl::StatusOr<bool> RolloutRepo::HasTargets(Tx& txn, int64_t deployment_id) {
  return InTx(txn, absl::StrCat("find targets of deployment ", deployment_id),
              [&](pqxx::work& tx) -> absl::StatusOr<bool> {
                return tx
                    .exec_params1(
                        "SELECT EXISTS (SELECT 1 FROM deployment_targets "
                        "WHERE deployment_id = $1)",
                        deployment_id)[0]
                    .as<bool>();
              });
}

absl::StatusOr<std::map<std::string, uint64_t>> RolloutRepo::CountRolloutsByState(Tx& txn) {
  return InTx(txn, "count rollouts by state",
              [&](pqxx::work& tx) -> absl::StatusOr<std::map<std::string, uint64_t>> {
                return CountsOf(tx.exec("SELECT state, count(*) FROM rollouts GROUP BY state"));
              });
}

absl::StatusOr<std::map<std::string, uint64_t>> RolloutRepo::CountTargetsByState(Tx& txn) {
  return InTx(txn, "count deployment targets by state",
              [&](pqxx::work& tx) -> absl::StatusOr<std::map<std::string, uint64_t>> {
                return CountsOf(
                    tx.exec("SELECT CASE WHEN rollback_metadata_version IS NULL THEN state "
                            "ELSE 'rolled_back' END, count(*) FROM deployment_targets GROUP BY 1"));
              });
}

}  // namespace edgefleet::server
