// Decoding of result rows shared by several repositories (adapter-internal header: include it
// only from server/store/*.cpp).
#pragma once

#include <pqxx/pqxx>

#include "absl/status/statusor.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::server::internal {

// Columns: id, status, labels::text, first_seen, last_seen (unix seconds), inventory::text.
absl::StatusOr<v1::Device> DeviceFromRow(const pqxx::row& row);

// Columns: model_name, version, format, artifact_sha256, size_bytes, inputs::text,
// outputs::text, labels::text, metadata_version, created_at (unix seconds).
absl::StatusOr<v1::ModelVersion> ModelVersionFromRow(const pqxx::row& row);

}  // namespace edgefleet::server::internal
