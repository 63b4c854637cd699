// ModelRepo is the model registry: versions, their metadata and signed release manifests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/types.pb.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

// A model version as published: its metadata plus the signed manifest the agents verify.
struct StoredVersion {
  v1::ModelVersion meta;
  std::string signed_manifest;
  std::string signature;
  std::string key_id;
};

class ModelRepo {
 public:
  explicit ModelRepo(Database& db) : db_(db) {}

  // Creates the model row if needed. `meta.metadata_version` must come from
  // NextMetadataVersion(); `meta.created_at` defaults to now. AlreadyExists "model M version V
  // already exists"; InvalidArgument for a zero metadata version or a digest that is not
  // 32 bytes.
  absl::Status InsertVersion(const v1::ModelVersion& meta, const std::string& signed_manifest,
                             const std::string& signature, const std::string& key_id);
  // Strictly increasing across calls and server replicas (a PostgreSQL sequence).
  absl::StatusOr<uint64_t> NextMetadataVersion();
  // NotFound "model M version V not found".
  absl::StatusOr<StoredVersion> GetVersion(const std::string& model_name,
                                           const std::string& version);
  // Models by name, each with its versions in publication (metadata version) order.
  absl::StatusOr<std::vector<v1::Model>> ListModels();
  // One page of ListModels: model names after `page.after`; continues after the last name.
  absl::StatusOr<Page<v1::Model>> ListModelsPage(const PageRequest& page);
  // NotFound "model M not found".
  absl::StatusOr<v1::Model> GetModel(const std::string& model_name);
  // Whether any version's artifact has this SHA-256.
  absl::StatusOr<bool> ArtifactReferenced(const std::string& sha256);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
