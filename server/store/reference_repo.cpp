#include "server/store/reference_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/rows.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {
namespace {

absl::StatusOr<v1::ReferenceProfile> ParseProfile(const pqxx::field& field,
                                                  const std::string& what) {
  v1::ReferenceProfile profile;
  if (!profile.ParseFromString(pqxx::binarystring(field).str())) {
    return absl::DataLossError(absl::StrCat("stored reference profile of ", what, " is corrupt"));
  }
  return profile;
}

}  // namespace

absl::StatusOr<std::optional<v1::ReferenceProfile>> ReferenceRepo::Get(Tx& txn,
                                                                       const std::string& model,
                                                                       const std::string& version) {
  const std::string what = absl::StrCat("model ", model, " version ", version);
  return internal::InTx(
      txn, absl::StrCat("read reference profile of ", what),
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<v1::ReferenceProfile>> {
        pqxx::result r = tx.exec_params(
            "SELECT profile FROM reference_profiles WHERE model_name = $1 AND version = $2", model,
            version);
        if (r.empty()) return std::nullopt;
        auto profile = ParseProfile(r[0][0], what);
        if (!profile.ok()) return profile.status();
        return std::optional<v1::ReferenceProfile>(*std::move(profile));
      });
}

absl::StatusOr<bool> ReferenceRepo::Insert(Tx& txn, const std::string& model,
                                           const std::string& version,
                                           const v1::ReferenceProfile& profile) {
  if (profile.profile_sha256().size() != 32) {
    return absl::InvalidArgumentError("reference profile without its SHA-256");
  }
  if (profile.source() != v1::REFERENCE_SOURCE_UPLOADED &&
      profile.source() != v1::REFERENCE_SOURCE_FLEET) {
    return absl::InvalidArgumentError("only uploaded and fleet reference profiles are stored");
  }
  return internal::InTx(
      txn, absl::StrCat("store reference profile of model ", model, " version ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        pqxx::result r = tx.exec_params(
            "INSERT INTO reference_profiles (model_name, version, source, samples, windows, "
            "feature_count, profile_sha256, profile) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING",
            model, version, static_cast<int>(profile.source()),
            static_cast<int64_t>(profile.samples()), static_cast<int64_t>(profile.windows()),
            profile.features_size(), pqxx::binarystring(profile.profile_sha256()),
            pqxx::binarystring(profile.SerializeAsString()));
        return r.affected_rows() == 1;
      });
}

absl::StatusOr<std::map<std::string, v1::ReferenceSummary>> ReferenceRepo::Summaries(
    Tx& txn, const std::string& model) {
  return internal::InTx(
      txn, absl::StrCat("read reference summaries of model ", model),
      [&](pqxx::work& tx) -> absl::StatusOr<std::map<std::string, v1::ReferenceSummary>> {
        std::map<std::string, v1::ReferenceSummary> out;
        for (const auto& row : tx.exec_params(
                 "SELECT version, source, samples, windows, feature_count, profile_sha256 "
                 "FROM reference_profiles WHERE model_name = $1",
                 model)) {
          v1::ReferenceSummary s;
          s.set_source(static_cast<v1::ReferenceSource>(row[1].as<int>()));
          s.set_samples(row[2].as<uint64_t>());
          s.set_windows(row[3].as<uint64_t>());
          s.set_feature_count(row[4].as<uint32_t>());
          s.set_profile_sha256(pqxx::binarystring(row[5]).str());
          out.emplace(row[0].as<std::string>(), std::move(s));
        }
        return out;
      });
}

absl::StatusOr<uint64_t> ReferenceRepo::CountWindows(Tx& txn, const std::string& model,
                                                     const std::string& version, uint64_t limit) {
  return internal::InTx(
      txn, "count telemetry windows", [&](pqxx::work& tx) -> absl::StatusOr<uint64_t> {
        return tx
            .exec_params(
                "SELECT count(*) FROM (SELECT 1 FROM telemetry_windows WHERE model_name = $1 "
                "AND version = $2 AND request_count > 0 LIMIT $3) w",
                model, version, static_cast<int64_t>(limit))[0][0]
            .as<uint64_t>();
      });
}

absl::StatusOr<bool> ReferenceRepo::ClaimFleetWork(Tx& txn) {
  return internal::InTx(
      txn, "claim the fleet reference work", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
        return tx
            .exec("SELECT pg_try_advisory_xact_lock(hashtext('edgefleet_fleet_reference'))")[0][0]
            .as<bool>();
      });
}

absl::StatusOr<std::vector<v1::ModelVersion>> ReferenceRepo::VersionsAwaitingReference(Tx& txn) {
  return internal::InTx(
      txn, "list versions awaiting a reference",
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::ModelVersion>> {
        std::vector<v1::ModelVersion> out;
        for (const auto& row :
             tx.exec("SELECT v.model_name, v.version, v.format, v.artifact_sha256, v.size_bytes, "
                     "v.inputs::text, v.outputs::text, v.labels::text, v.metadata_version, "
                     "floor(extract(epoch FROM v.created_at))::bigint FROM model_versions v "
                     "WHERE NOT EXISTS (SELECT 1 FROM reference_profiles r WHERE r.model_name = "
                     "v.model_name AND r.version = v.version) AND EXISTS (SELECT 1 FROM "
                     "telemetry_windows w WHERE w.model_name = v.model_name AND w.version = "
                     "v.version AND w.request_count > 0) ORDER BY v.metadata_version")) {
          auto mv = internal::ModelVersionFromRow(row);
          if (!mv.ok()) return mv.status();
          out.push_back(*std::move(mv));
        }
        return out;
      });
}

absl::StatusOr<std::vector<v1::TelemetryWindow>> ReferenceRepo::FirstWindows(
    Tx& txn, const std::string& model, const std::string& version, uint64_t limit) {
  return internal::InTx(
      txn, absl::StrCat("read first windows of model ", model, " version ", version),
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<v1::TelemetryWindow>> {
        std::vector<v1::TelemetryWindow> out;
        for (const auto& row : tx.exec_params(
                 "SELECT summary FROM telemetry_windows WHERE model_name = $1 AND version = $2 "
                 "AND request_count > 0 ORDER BY window_start, device_id, stream_id, sequence "
                 "LIMIT $3",
                 model, version, static_cast<int64_t>(limit))) {
          v1::TelemetryWindow w;
          // Stored windows were checked at ingest; one that does not parse is skipped.
          if (w.ParseFromString(pqxx::binarystring(row[0]).str())) out.push_back(std::move(w));
        }
        return out;
      });
}

}  // namespace edgefleet::server
