#include "server/store/deployment_repo.h"

#include <charconv>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

namespace {

constexpr absl::string_view kTargetPrefix = "DEPLOYMENT_TARGET_STATE_";

constexpr const char* kDeploymentColumns =
    "id, model_name, version, label_selector, floor(extract(epoch FROM created_at))::bigint, "
    "metadata_version";

v1::Deployment DeploymentFromRow(const pqxx::row& row) {
  v1::Deployment d;
  d.set_deployment_id(row[0].as<std::string>());
  d.set_model_name(row[1].as<std::string>());
  d.set_version(row[2].as<std::string>());
  d.set_label_selector(row[3].as<std::string>());
  *d.mutable_created_at() = internal::UnixToTimestamp(row[4].as<int64_t>());
  d.set_metadata_version(row[5].as<uint64_t>());
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

}  // namespace

absl::StatusOr<v1::Deployment> DeploymentRepo::Create(Tx& txn, const std::string& model_name,
                                                      const std::string& version,
                                                      const std::string& label_selector_text,
                                                      const Labels& selector, int64_t now_unix) {
  return internal::InTx(
      txn, absl::StrCat("deploy model ", model_name, " version ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Deployment> {
        if (tx.exec_params("SELECT 1 FROM model_versions WHERE model_name = $1 AND version = $2",
                           model_name, version)
                .empty()) {
          return absl::NotFoundError(
              absl::StrCat("model ", model_name, " version ", version, " not found"));
        }
        // The new row's metadata_version comes from release_metadata_version_seq (its default).
        const int64_t id =
            tx.exec_params1(
                  "INSERT INTO deployments (model_name, version, selector, label_selector, "
                  "created_at) VALUES ($1, $2, $3::jsonb, $4, to_timestamp($5)) RETURNING id",
                  model_name, version, internal::LabelsToJson(selector), label_selector_text,
                  now_unix)[0]
                .as<int64_t>();
        tx.exec_params(
            "INSERT INTO deployment_targets (deployment_id, device_id, state, updated_at) "
            "SELECT $1, id, 'pending', to_timestamp($3) FROM devices "
            "WHERE status = 'active' AND labels @> $2::jsonb",
            id, internal::LabelsToJson(selector), now_unix);
        tx.exec_params(
            "UPDATE deployment_targets t SET state = 'superseded', updated_at = to_timestamp($3) "
            "FROM deployments d WHERE t.deployment_id = d.id AND d.model_name = $2 "
            "AND d.id <> $1 AND t.state <> 'superseded' AND t.device_id IN "
            "(SELECT device_id FROM deployment_targets WHERE deployment_id = $1)",
            id, model_name, now_unix);
        return *LoadDeployment(tx, id);
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
  return internal::InTx(
      txn, absl::StrCat("compute desired state of device ", device_id),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<StoredVersion>> {
        pqxx::result device = tx.exec_params("SELECT status FROM devices WHERE id = $1", device_id);
        if (device.empty()) {
          return absl::NotFoundError(absl::StrCat("device ", device_id, " not found"));
        }
        std::vector<StoredVersion> desired;
        if (device[0][0].as<std::string>() != "active") return desired;
        pqxx::result latest = tx.exec_params(
            "SELECT DISTINCT ON (d.model_name) d.id, d.model_name FROM deployments d "
            "JOIN devices dev ON dev.id = $1 AND dev.labels @> d.selector "
            "ORDER BY d.model_name, d.id DESC",
            device_id);
        for (const pqxx::row& row : latest) {
          const int64_t id = row[0].as<int64_t>();
          const std::string model = row[1].as<std::string>();
          // A target superseded earlier comes back when the device matches this deployment again.
          tx.exec_params(
              "INSERT INTO deployment_targets (deployment_id, device_id, state) "
              "VALUES ($1, $2, 'pending') ON CONFLICT (deployment_id, device_id) DO UPDATE "
              "SET state = 'pending', detail = '', updated_at = now() "
              "WHERE deployment_targets.state = 'superseded'",
              id, device_id);
          tx.exec_params(
              "UPDATE deployment_targets t SET state = 'superseded', updated_at = now() "
              "FROM deployments d WHERE t.deployment_id = d.id AND t.device_id = $1 "
              "AND d.model_name = $2 AND d.id <> $3 AND t.state <> 'superseded'",
              device_id, model, id);
        }
        pqxx::result versions = tx.exec_params(
            "SELECT mv.model_name, mv.version, mv.format, mv.artifact_sha256, mv.size_bytes, "
            "mv.inputs::text, mv.outputs::text, mv.labels::text, d.metadata_version, "
            "floor(extract(epoch FROM mv.created_at))::bigint, mv.signed_manifest, mv.signature, "
            "mv.key_id FROM model_versions mv JOIN deployments d "
            "ON d.model_name = mv.model_name AND d.version = mv.version "
            "WHERE d.id = ANY (SELECT (jsonb_array_elements_text($1::jsonb))::bigint) "
            "ORDER BY mv.model_name",
            [&] {
              std::vector<std::string> ids;
              for (const pqxx::row& row : latest) ids.push_back(row[0].as<std::string>());
              return internal::StringsToJson(ids);
            }());
        for (const pqxx::row& row : versions) {
          absl::StatusOr<v1::ModelVersion> mv = internal::ModelVersionFromRow(row);
          if (!mv.ok()) return mv.status();
          desired.push_back(StoredVersion{*std::move(mv), pqxx::binarystring(row[10]).str(),
                                          pqxx::binarystring(row[11]).str(),
                                          row[12].as<std::string>()});
        }
        return desired;
      });
}

absl::Status DeploymentRepo::UpdateTargetState(Tx& txn, const std::string& device_id,
                                               const std::string& model_name,
                                               const std::string& version,
                                               v1::DeploymentTargetState state,
                                               const std::string& detail, int64_t now_unix) {
  if (state == v1::DEPLOYMENT_TARGET_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError("deployment target state is unspecified");
  }
  return internal::InTx(
      txn,
      absl::StrCat("update deployment target of device ", device_id, " for model ", model_name,
                   " version ", version),
      [&](pqxx::work& tx) {
        tx.exec_params(
            "UPDATE deployment_targets t SET state = $4, detail = $5, "
            "updated_at = to_timestamp($6) FROM deployments d "
            "WHERE t.deployment_id = d.id AND t.device_id = $1 AND d.model_name = $2 "
            "AND d.version = $3 AND t.state <> 'superseded' "
            "AND NOT (t.state = 'serving' AND $4 IN ('pending', 'in_progress'))",
            device_id, model_name, version, internal::ToDb(state, kTargetPrefix), detail, now_unix);
        return absl::OkStatus();
      });
}

}  // namespace edgefleet::server
