#include "server/store/deployment_repo.h"

#include <charconv>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/rollout/wave_plan.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rollouts.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/transaction.h"
#include "server/store/rollout_repo.h"

namespace edgefleet::server {

using internal::WithTransaction;

namespace {

constexpr absl::string_view kTargetPrefix = "DEPLOYMENT_TARGET_STATE_";

constexpr const char* kDeploymentColumns =
    "id, model_name, version, label_selector, floor(extract(epoch FROM created_at))::bigint, "
    "metadata_version, capture";

v1::Deployment DeploymentFromRow(const pqxx::row& row) {
  v1::Deployment d;
  d.set_deployment_id(row[0].as<std::string>());
  d.set_model_name(row[1].as<std::string>());
  d.set_version(row[2].as<std::string>());
  d.set_label_selector(row[3].as<std::string>());
  *d.mutable_created_at() = internal::UnixToTimestamp(row[4].as<int64_t>());
  d.set_metadata_version(row[5].as<uint64_t>());
  if (!row[6].is_null()) {
    // Written by InsertRollout from a validated spec; an unreadable one reads as no capture.
    if (!d.mutable_capture()->ParseFromString(pqxx::binarystring(row[6]).str())) d.clear_capture();
  }
  return d;
}

v1::DeploymentTarget TargetFromRow(const pqxx::row& row) {
  // Columns: device_id, state, detail, updated_at.
  v1::DeploymentTarget t;
  t.set_device_id(row[0].as<std::string>());
  t.set_state(internal::FromDb<v1::DeploymentTargetState>(row[1].as<std::string>(), kTargetPrefix));
  t.set_detail(row[2].as<std::string>());
  *t.mutable_updated_at() = internal::UnixToTimestamp(row[3].as<int64_t>());
  return t;
}

// Counts each deployment's targets by state: `counts` rows are (deployment_id, state, count),
// `index` maps a deployment id to its deployment.
void AddCounts(const pqxx::result& counts, const std::map<int64_t, v1::Deployment*>& index) {
  for (const pqxx::row& row : counts) {
    auto it = index.find(row[0].as<int64_t>());
    if (it == index.end()) continue;
    v1::Deployment& d = *it->second;
    const uint64_t n = row[2].as<uint64_t>();
    v1::DeploymentTargetCounts& c = *d.mutable_target_counts();
    switch (internal::FromDb<v1::DeploymentTargetState>(row[1].as<std::string>(), kTargetPrefix)) {
      case v1::DEPLOYMENT_TARGET_STATE_PENDING:
        c.set_pending(c.pending() + n);
        break;
      case v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS:
        c.set_in_progress(c.in_progress() + n);
        break;
      case v1::DEPLOYMENT_TARGET_STATE_SERVING:
        c.set_serving(c.serving() + n);
        break;
      case v1::DEPLOYMENT_TARGET_STATE_FAILED:
        c.set_failed(c.failed() + n);
        break;
      case v1::DEPLOYMENT_TARGET_STATE_SUPERSEDED:
        c.set_superseded(c.superseded() + n);
        break;
      case v1::DEPLOYMENT_TARGET_STATE_ROLLED_BACK:
        c.set_rolled_back(c.rolled_back() + n);
        break;
      default:
        break;  // the table's CHECK allows no other state
    }
    d.set_target_count(d.target_count() + n);
  }
}

// At most `limit` deployments with ids above `after` (keyset), with their target counts and no
// targets.
std::vector<v1::Deployment> LoadDeploymentsAfter(pqxx::work& tx, int64_t after, size_t limit) {
  pqxx::result rows =
      tx.exec_params(absl::StrCat("SELECT ", kDeploymentColumns,
                                  " FROM deployments WHERE id > $1 ORDER BY id LIMIT $2"),
                     after, static_cast<int64_t>(limit));
  if (rows.empty()) return {};
  std::vector<v1::Deployment> deployments;
  for (const pqxx::row& row : rows) deployments.push_back(DeploymentFromRow(row));
  std::map<int64_t, v1::Deployment*> index;
  for (size_t i = 0; i < deployments.size(); ++i) index[rows[i][0].as<int64_t>()] = &deployments[i];
  const int64_t last = rows[rows.size() - 1][0].as<int64_t>();
  AddCounts(tx.exec_params("SELECT deployment_id, state, count(*) FROM deployment_targets "
                           "WHERE deployment_id > $1 AND deployment_id <= $2 "
                           "GROUP BY deployment_id, state",
                           after, last),
            index);
  return deployments;
}

// The deployment `id` with its target counts and no targets; nullopt when there is none.
std::optional<v1::Deployment> LoadDeployment(pqxx::work& tx, int64_t id) {
  std::vector<v1::Deployment> loaded = LoadDeploymentsAfter(tx, id - 1, 1);
  if (loaded.empty() || loaded.front().deployment_id() != std::to_string(id)) return std::nullopt;
  return std::move(loaded.front());
}

bool ParseId(const std::string& text, int64_t* id) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *id);
  return ec == std::errc() && ptr == end && !text.empty();
}

// Per model, the device's target in the newest deployment that still targets it; a rolled back
// target names the version it ran before, under the roll back's release. Continues a WITH that
// has defined `dev` (one row or none: status, serial, pending, and `admitted`, whether its
// desired state may be read) and reads the device id from $1: one row per desired version of an
// admitted device, or one row of NULLs but dev's (the last four columns) when it has none or is
// not admitted; no row for an unknown device.
constexpr const char* kDesiredOfDevice1 =
    "latest AS (SELECT DISTINCT ON (d.model_name) d.model_name, "
    "CASE WHEN t.rollback_metadata_version IS NOT NULL THEN t.previous_version "
    "ELSE d.version END AS version, CASE WHEN t.rollback_metadata_version IS NOT NULL "
    "THEN t.rollback_metadata_version "
    "ELSE d.metadata_version END AS metadata_version, CASE WHEN "
    "t.rollback_metadata_version IS NULL THEN d.capture END AS capture "
    "FROM deployment_targets t "
    "JOIN deployments d ON d.id = t.deployment_id WHERE t.device_id = $1 "
    "AND t.state <> 'superseded' ORDER BY d.model_name, d.id DESC) "
    "SELECT mv.model_name, mv.version, mv.format, mv.artifact_sha256, mv.size_bytes, "
    "mv.inputs::text, mv.outputs::text, mv.labels::text, l.metadata_version, "
    "floor(extract(epoch FROM mv.created_at))::bigint, mv.signed_manifest, mv.signature, "
    "mv.key_id, l.capture, dev.status, dev.serial, dev.pending, dev.admitted FROM dev "
    "LEFT JOIN (latest l "
    "JOIN model_versions mv ON mv.model_name = l.model_name AND mv.version = l.version) "
    "ON dev.admitted ORDER BY mv.model_name";
constexpr int kDesiredStatusColumn = 14;
constexpr int kDesiredAdmittedColumn = 17;

DeviceStore::DeviceIdentity IdentityFromDesiredRow(const pqxx::row& row) {
  return {internal::FromDb<v1::DeviceStatus>(row[kDesiredStatusColumn].as<std::string>(),
                                             "DEVICE_STATUS_"),
          row[kDesiredStatusColumn + 1].as<std::string>(),
          row[kDesiredStatusColumn + 2].as<std::string>()};
}

// The rows of kDesiredOfDevice1.
absl::StatusOr<std::vector<StoredVersion>> DesiredFromRows(const pqxx::result& rows) {
  std::vector<StoredVersion> desired;
  for (const pqxx::row& row : rows) {
    if (row[0].is_null()) continue;  // the device's status alone: nothing desired
    absl::StatusOr<v1::ModelVersion> mv = internal::ModelVersionFromRow(row);
    if (!mv.ok()) return mv.status();
    StoredVersion stored{*std::move(mv), pqxx::binarystring(row[10]).str(),
                         pqxx::binarystring(row[11]).str(), row[12].as<std::string>(),
                         std::nullopt};
    // The capture request travels with the version the device is targeted with; a rolled back
    // target (its previous version) carries none.
    if (!row[13].is_null()) {
      v1::CaptureSpec capture;
      if (capture.ParseFromString(pqxx::binarystring(row[13]).str()) && capture.enabled()) {
        stored.capture = std::move(capture);
      }
    }
    desired.push_back(std::move(stored));
  }
  return desired;
}

}  // namespace

absl::StatusOr<v1::Deployment> DeploymentRepo::Create(Tx& txn, const std::string& model_name,
                                                      const std::string& version,
                                                      const std::string& label_selector_text,
                                                      const Labels& selector, int64_t now_unix,
                                                      const v1::CaptureSpec* capture) {
  absl::StatusOr<int64_t> created = internal::InTx(
      txn, absl::StrCat("deploy model ", model_name, " version ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<int64_t> {
        // A deployment is a one-wave rollout named after its id, started at once: its targets
        // exist when the answer is given, and the rollout controller assigns devices that match
        // later and evaluates its gates.
        const int64_t id =
            tx.exec1("SELECT nextval(pg_get_serial_sequence('deployments', 'id'))")[0]
                .as<int64_t>();
        rollout::RolloutDefinition definition;
        definition.name = absl::StrCat("deploy-", id);
        definition.model_name = model_name;
        definition.version = version;
        definition.label_selector = label_selector_text;
        definition.selector = selector;
        definition.plan = rollout::SingleWavePlan();
        if (capture != nullptr && capture->enabled()) definition.capture = *capture;
        auto stored = internal::InsertRollout(tx, rollout::NewRollout(definition), "deploy create",
                                              now_unix, id);
        if (!stored.ok()) return stored.status();
        tx.exec_params(
            "UPDATE rollouts SET state = 'running', wave_started_at = to_timestamp($2) "
            "WHERE name = $1",
            definition.name, now_unix);
        return id;
      });
  if (!created.ok()) return created.status();
  std::vector<std::string> devices;
  auto listed = internal::InTx(txn, "list the devices a deployment matches", [&](pqxx::work& tx) {
    for (const pqxx::row& row :
         tx.exec_params("SELECT id FROM devices WHERE status = 'active' AND labels @> $1::jsonb "
                        "ORDER BY id",
                        internal::LabelsToJson(selector))) {
      devices.push_back(row[0].as<std::string>());
    }
    return absl::OkStatus();
  });
  if (!listed.ok()) return listed;
  if (auto s = RolloutRepo().Assign(txn, *created, 0, devices, now_unix); !s.ok()) return s;
  return internal::InTx(txn, "read the deployment", [&](pqxx::work& tx) {
    return absl::StatusOr<v1::Deployment>(*LoadDeployment(tx, *created));
  });
}

absl::StatusOr<DeploymentPage> DeploymentRepo::Get(const std::string& deployment_id,
                                                   const PageRequest& targets) {
  int64_t id = 0;
  absl::Status not_found =
      absl::NotFoundError(absl::StrCat("deployment ", deployment_id, " not found"));
  if (!ParseId(deployment_id, &id) || id <= 0) return not_found;
  return WithTransaction(
      db_, absl::StrCat("get deployment ", deployment_id),
      [&](pqxx::work& tx) -> absl::StatusOr<DeploymentPage> {
        std::optional<v1::Deployment> deployment = LoadDeployment(tx, id);
        if (!deployment.has_value()) return not_found;
        std::vector<v1::DeploymentTarget> rows;
        for (const pqxx::row& row : tx.exec_params(
                 "SELECT device_id, state, detail, floor(extract(epoch FROM updated_at))::bigint "
                 "FROM deployment_targets WHERE deployment_id = $1 AND device_id > $2 "
                 "ORDER BY device_id LIMIT $3",
                 id, targets.after, static_cast<int64_t>(targets.size + 1))) {
          rows.push_back(TargetFromRow(row));
        }
        Page<v1::DeploymentTarget> page =
            FinishPage(std::move(rows), targets.size,
                       [](const v1::DeploymentTarget& t) { return t.device_id(); });
        DeploymentPage out{std::move(*deployment), std::move(page.next_after)};
        for (v1::DeploymentTarget& t : page.items) *out.deployment.add_targets() = std::move(t);
        return out;
      });
}

absl::StatusOr<Page<v1::Deployment>> DeploymentRepo::ListPage(const PageRequest& page) {
  int64_t after = 0;
  if (!page.after.empty() && (!ParseId(page.after, &after) || after < 0)) {
    return absl::InvalidArgumentError("page_token is not a page token of ListDeployments");
  }
  return WithTransaction(db_, "list a page of deployments",
                         [&](pqxx::work& tx) -> absl::StatusOr<Page<v1::Deployment>> {
                           return FinishPage(
                               LoadDeploymentsAfter(tx, after, page.size + 1), page.size,
                               [](const v1::Deployment& d) { return d.deployment_id(); });
                         });
}

absl::StatusOr<std::vector<StoredVersion>> DeploymentRepo::DesiredForDevice(
    Tx& txn, const std::string& device_id) {
  static const std::string kSql = absl::StrCat(
      "WITH dev AS (SELECT status, '' AS serial, '' AS pending, status = 'active' AS admitted "
      "FROM devices WHERE id = $1), ",
      kDesiredOfDevice1);
  return internal::InTx(
      txn, absl::StrCat("read desired state of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<StoredVersion>> {
        pqxx::result r = tx.exec_params(kSql, device_id);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
        return DesiredFromRows(r);
      });
}

absl::StatusOr<CheckInRecord> DeploymentRepo::CheckIn(const std::string& device_id,
                                                      const std::string& certificate_serial_hex,
                                                      const v1::Inventory& inventory,
                                                      int64_t now_unix) {
  // One statement in autocommit, prepared once per connection: the check-in is every device's
  // most frequent call, and each round trip to PostgreSQL costs both processes a wakeup. It
  // reads the identity that mTLS authorization needs, so the caller's certificate is checked
  // without a statement of its own. The UPDATE in WITH runs whether or not the SELECT reads it,
  // on the SELECT's snapshot. Run twice (a retry after a broken connection), it writes the same.
  static const std::string kSql = absl::StrCat(
      "WITH dev AS (SELECT status, coalesce(certificate_serial, '') AS serial, "
      "coalesce(pending_certificate_serial, '') AS pending, "
      "status = 'active' AND certificate_serial IS NOT DISTINCT FROM $4 AS admitted "
      "FROM devices WHERE id = $1), "
      "written AS (UPDATE devices SET inventory = $2::jsonb, "
      "last_seen = greatest(last_seen, to_timestamp($3)) WHERE id = $1 "
      "AND (SELECT admitted FROM dev) AND inventory IS DISTINCT FROM $2::jsonb RETURNING 1), ",
      kDesiredOfDevice1);
  return internal::AutocommitOnce(
      db_, absl::StrCat("record check-in of device ", device_id),
      [&](pqxx::nontransaction& tx) -> absl::StatusOr<CheckInRecord> {
        pqxx::result r = internal::ExecPrepared(tx, "device_check_in", kSql, device_id,
                                                internal::MessageToJson(inventory), now_unix,
                                                certificate_serial_hex);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
        CheckInRecord record;
        record.identity = IdentityFromDesiredRow(r[0]);
        record.recorded = r[0][kDesiredAdmittedColumn].as<bool>();
        if (!record.recorded) return record;
        auto desired = DesiredFromRows(r);
        if (!desired.ok()) return desired.status();
        record.desired = *std::move(desired);
        return record;
      });
}

absl::Status DeploymentRepo::UpdateTargetState(Tx& txn, const std::string& device_id,
                                               const std::string& model_name,
                                               const std::string& version,
                                               v1::DeploymentTargetState state,
                                               v1::FailureReason reason, const std::string& detail,
                                               int64_t now_unix) {
  if (state == v1::DEPLOYMENT_TARGET_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError("deployment target state is unspecified");
  }
  return internal::InTx(
      txn,
      absl::StrCat("update deployment target of device ", device_id, " for model ", model_name,
                   " version ", version),
      [&](pqxx::work& tx) {
        // The report is about the target's own version: it moves the target, rolled back or not
        // (a probation failure may arrive after the roll back decision), until the device is
        // back on its previous version.
        // Prepared: a report moves a target once per event, and planning the join each time
        // cost more than running it.
        internal::ExecPrepared(
            tx, "target_state_from_event",
            "UPDATE deployment_targets t SET state = $4, detail = $5, "
            "updated_at = to_timestamp($6), reason = $7 FROM deployments d "
            "WHERE t.deployment_id = d.id AND t.device_id = $1 AND d.model_name = $2 "
            "AND d.version = $3 AND t.state NOT IN ('superseded', 'rolled_back') "
            "AND NOT (t.state = 'serving' AND $4 IN ('pending', 'in_progress'))",
            device_id, model_name, version, internal::ToDb(state, kTargetPrefix), detail, now_unix,
            state == v1::DEPLOYMENT_TARGET_STATE_FAILED ? v1::FailureReason_Name(reason)
                                                        : std::string());
        // Serving the version a rolled back target sent it back to: the device is back. A
        // failed target stays failed (it never left that version; its failure counts).
        if (state == v1::DEPLOYMENT_TARGET_STATE_SERVING) {
          internal::ExecPrepared(
              tx, "target_rolled_back_from_event",
              "UPDATE deployment_targets t SET state = 'rolled_back', "
              "detail = 'serving ' || $3 || ' again after the roll back', "
              "updated_at = to_timestamp($4), reason = '' FROM deployments d "
              "WHERE t.deployment_id = d.id AND t.device_id = $1 AND d.model_name = $2 "
              "AND t.previous_version = $3 AND t.rollback_metadata_version IS NOT NULL "
              "AND t.state IN ('pending', 'in_progress', 'serving')",
              device_id, model_name, version, now_unix);
        }
        return absl::OkStatus();
      });
}

}  // namespace edgefleet::server
