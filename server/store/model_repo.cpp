#include "server/store/model_repo.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

namespace {

constexpr const char* kVersionColumns =
    "model_name, version, format, artifact_sha256, size_bytes, inputs::text, outputs::text, "
    "labels::text, metadata_version, floor(extract(epoch FROM created_at))::bigint";

absl::Status VersionNotFound(const std::string& model_name, const std::string& version) {
  return absl::NotFoundError(
      absl::StrCat("model ", model_name, " version ", version, " not found"));
}

// Models from `models` rows (name) with their versions from `versions` rows (kVersionColumns,
// in publication order).
absl::StatusOr<std::vector<v1::Model>> GroupModels(const pqxx::result& models,
                                                   const pqxx::result& versions) {
  std::vector<v1::Model> out;
  std::map<std::string, size_t> index;
  for (const pqxx::row& row : models) {
    index[row[0].as<std::string>()] = out.size();
    out.emplace_back().set_name(row[0].as<std::string>());
  }
  for (const pqxx::row& row : versions) {
    absl::StatusOr<v1::ModelVersion> mv = internal::ModelVersionFromRow(row);
    if (!mv.ok()) return mv.status();
    auto it = index.find(mv->model_name());
    if (it == index.end()) continue;  // cannot happen: versions reference models
    *out[it->second].add_versions() = *std::move(mv);
  }
  return out;
}

absl::StatusOr<std::vector<v1::Model>> LoadModels(pqxx::work& tx, const std::string* only) {
  pqxx::result models = only == nullptr
                            ? tx.exec("SELECT name FROM models ORDER BY name")
                            : tx.exec_params("SELECT name FROM models WHERE name = $1", *only);
  pqxx::result versions =
      only == nullptr
          ? tx.exec(absl::StrCat("SELECT ", kVersionColumns,
                                 " FROM model_versions ORDER BY model_name, metadata_version"))
          : tx.exec_params(absl::StrCat("SELECT ", kVersionColumns,
                                        " FROM model_versions WHERE model_name = $1 "
                                        "ORDER BY metadata_version"),
                           *only);
  return GroupModels(models, versions);
}

// At most `limit` models named after `after` (keyset), with their versions.
absl::StatusOr<std::vector<v1::Model>> LoadModelsAfter(pqxx::work& tx, const std::string& after,
                                                       size_t limit) {
  constexpr const char* kNames = "SELECT name FROM models WHERE name > $1 ORDER BY name LIMIT $2";
  pqxx::result models = tx.exec_params(kNames, after, static_cast<int64_t>(limit));
  pqxx::result versions = tx.exec_params(
      absl::StrCat("SELECT ", kVersionColumns, " FROM model_versions WHERE model_name IN (", kNames,
                   ") ORDER BY model_name, metadata_version"),
      after, static_cast<int64_t>(limit));
  return GroupModels(models, versions);
}

}  // namespace

absl::Status ModelRepo::InsertVersion(Tx& txn, const v1::ModelVersion& meta,
                                      const std::string& signed_manifest,
                                      const std::string& signature, const std::string& key_id) {
  const std::string what =
      absl::StrCat("store model ", meta.model_name(), " version ", meta.version());
  if (meta.metadata_version() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": metadata_version is 0"));
  }
  if (meta.artifact_sha256().size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": artifact_sha256 has ", meta.artifact_sha256().size(), " bytes, want 32"));
  }
  v1::ModelVersion specs;
  *specs.mutable_inputs() = meta.inputs();
  *specs.mutable_outputs() = meta.outputs();
  Labels labels(meta.labels().begin(), meta.labels().end());
  return internal::InTx(txn, what, [&](pqxx::work& tx) -> absl::Status {
    tx.exec_params("INSERT INTO models (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                   meta.model_name());
    try {
      tx.exec_params(
          "INSERT INTO model_versions (model_name, version, format, artifact_sha256, size_bytes, "
          "inputs, outputs, labels, metadata_version, signed_manifest, signature, key_id, "
          "created_at) VALUES ($1, $2, $3, $4, $5, "
          "COALESCE($6::jsonb -> 'inputs', '[]'), COALESCE($6::jsonb -> 'outputs', '[]'), "
          "$7::jsonb, $8, $9, $10, $11, COALESCE(to_timestamp($12), now()))",
          meta.model_name(), meta.version(), internal::ToDb(meta.format(), "MODEL_FORMAT_"),
          pqxx::binarystring(meta.artifact_sha256()), static_cast<int64_t>(meta.size_bytes()),
          internal::MessageToJson(specs), internal::LabelsToJson(labels),
          static_cast<int64_t>(meta.metadata_version()), pqxx::binarystring(signed_manifest),
          pqxx::binarystring(signature), key_id,
          meta.has_created_at() ? std::optional<int64_t>(meta.created_at().seconds())
                                : std::nullopt);
    } catch (const pqxx::unique_violation& e) {
      if (absl::StrContains(e.what(), "model_versions_pkey")) {
        return internal::MarkFailed(
            txn, absl::AlreadyExistsError(absl::StrCat("model ", meta.model_name(), " version ",
                                                       meta.version(), " already exists")));
      }
      return internal::MarkFailed(
          txn, absl::AlreadyExistsError(absl::StrCat(what, ": metadata version ",
                                                     meta.metadata_version(), " is already used")));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<uint64_t> ModelRepo::NextMetadataVersion(Tx& txn) {
  return internal::InTx(
      txn, "allocate metadata version", [](pqxx::work& tx) -> absl::StatusOr<uint64_t> {
        return tx.exec1("SELECT nextval('release_metadata_version_seq')")[0].as<uint64_t>();
      });
}

absl::StatusOr<StoredVersion> ModelRepo::GetVersion(const std::string& model_name,
                                                    const std::string& version) {
  return WithTransaction(
      db_, absl::StrCat("get model ", model_name, " version ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<StoredVersion> {
        pqxx::result r =
            tx.exec_params(absl::StrCat("SELECT ", kVersionColumns,
                                        ", signed_manifest, signature, key_id FROM model_versions "
                                        "WHERE model_name = $1 AND version = $2"),
                           model_name, version);
        if (r.empty()) return VersionNotFound(model_name, version);
        absl::StatusOr<v1::ModelVersion> mv = internal::ModelVersionFromRow(r[0]);
        if (!mv.ok()) return mv.status();
        return StoredVersion{*std::move(mv), pqxx::binarystring(r[0][10]).str(),
                             pqxx::binarystring(r[0][11]).str(), r[0][12].as<std::string>(),
                             std::nullopt};
      });
}

absl::StatusOr<std::vector<v1::Model>> ModelRepo::ListModels() {
  return WithTransaction(db_, "list models",
                         [](pqxx::work& tx) { return LoadModels(tx, nullptr); });
}

absl::StatusOr<Page<v1::Model>> ModelRepo::ListModelsPage(const PageRequest& page) {
  return WithTransaction(db_, "list a page of models",
                         [&](pqxx::work& tx) -> absl::StatusOr<Page<v1::Model>> {
                           auto models = LoadModelsAfter(tx, page.after, page.size + 1);
                           if (!models.ok()) return models.status();
                           return FinishPage(*std::move(models), page.size,
                                             [](const v1::Model& m) { return m.name(); });
                         });
}

absl::StatusOr<v1::Model> ModelRepo::GetModel(const std::string& model_name) {
  return WithTransaction(
      db_, absl::StrCat("get model ", model_name),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Model> {
        auto models = LoadModels(tx, &model_name);
        if (!models.ok()) return models.status();
        if (models->empty()) {
          return absl::NotFoundError(absl::StrCat("model ", model_name, " not found"));
        }
        return std::move(models->front());
      });
}

absl::StatusOr<bool> ModelRepo::ArtifactReferenced(const std::string& sha256) {
  // Asked on check-ins of devices a rollout has not reached yet: one prepared statement.
  return internal::AutocommitOnce(
      db_, "check artifact references", [&](pqxx::nontransaction& tx) -> absl::StatusOr<bool> {
        return internal::ExecPrepared(
                   tx, "artifact_referenced",
                   "SELECT EXISTS (SELECT 1 FROM model_versions WHERE artifact_sha256 = $1)",
                   pqxx::binarystring(sha256))[0][0]
            .as<bool>();
      });
}

}  // namespace edgefleet::server
