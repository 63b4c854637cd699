// ModelStore is the model registry: versions, their metadata and signed release manifests.
// ModelRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/capture.pb.h"
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
  // DeploymentStore::DesiredForDevice only: what the release asks the device to capture.
  std::optional<v1::CaptureSpec> capture;
};

class ModelStore {
 public:
  virtual ~ModelStore() = default;

  // Creates the model row if needed. `meta.metadata_version` must come from
  // NextMetadataVersion(); `meta.created_at` defaults to now. AlreadyExists "model M version V
  // already exists"; InvalidArgument for a zero metadata version or a digest that is not
  // 32 bytes.
  virtual absl::Status InsertVersion(Tx& tx, const v1::ModelVersion& meta,
                                     const std::string& signed_manifest,
                                     const std::string& signature, const std::string& key_id) = 0;
  // Strictly increasing across calls and server replicas (a PostgreSQL sequence).
  virtual absl::StatusOr<uint64_t> NextMetadataVersion(Tx& tx) = 0;
  // NotFound "model M version V not found".
  virtual absl::StatusOr<StoredVersion> GetVersion(const std::string& model_name,
                                                   const std::string& version) = 0;
  // Models by name, each with its versions in publication (metadata version) order.
  virtual absl::StatusOr<std::vector<v1::Model>> ListModels() = 0;
  // One page of ListModels: model names after `page.after`; continues after the last name.
  virtual absl::StatusOr<Page<v1::Model>> ListModelsPage(const PageRequest& page) = 0;
  // NotFound "model M not found".
  virtual absl::StatusOr<v1::Model> GetModel(const std::string& model_name) = 0;
  // Whether any version's artifact has this SHA-256.
  virtual absl::StatusOr<bool> ArtifactReferenced(const std::string& sha256) = 0;
};

// The PostgreSQL ModelStore.
class ModelRepo final : public ModelStore {
 public:
  explicit ModelRepo(Database& db) : db_(db) {}
  absl::Status InsertVersion(Tx& tx, const v1::ModelVersion& meta,
                             const std::string& signed_manifest, const std::string& signature,
                             const std::string& key_id) override;
  absl::StatusOr<uint64_t> NextMetadataVersion(Tx& tx) override;
  absl::StatusOr<StoredVersion> GetVersion(const std::string& model_name,
                                           const std::string& version) override;
  absl::StatusOr<std::vector<v1::Model>> ListModels() override;
  absl::StatusOr<Page<v1::Model>> ListModelsPage(const PageRequest& page) override;
  absl::StatusOr<v1::Model> GetModel(const std::string& model_name) override;
  absl::StatusOr<bool> ArtifactReferenced(const std::string& sha256) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
