// Storing a rollout from another repository's transaction (adapter-internal header: include it
// only from server/store/*.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "absl/status/statusor.h"
#include "server/store/rollout_repo.h"

namespace edgefleet::server::internal {

// RolloutStore::Insert on `tx`; the deployments row takes `deployment_id` when given.
absl::StatusOr<StoredRollout> InsertRollout(pqxx::work& tx, const v1::Rollout& definition,
                                            const std::string& created_by, int64_t now_unix,
                                            std::optional<int64_t> deployment_id);

}  // namespace edgefleet::server::internal
