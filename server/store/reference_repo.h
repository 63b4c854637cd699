// ReferenceStore keeps each model version's reference profile (what its drift is measured
// against): uploaded with the version, or made once from the fleet's first telemetry windows.
// ReferenceRepo is its PostgreSQL implementation; every method runs in the caller's Tx.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "edgefleet/v1/types.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class ReferenceStore {
 public:
  virtual ~ReferenceStore() = default;

  // The version's stored profile (UPLOADED or FLEET); nullopt while it has none.
  virtual absl::StatusOr<std::optional<v1::ReferenceProfile>> Get(Tx& tx, const std::string& model,
                                                                  const std::string& version) = 0;
  // Stores a version's profile (already validated, its profile_sha256 set): true when stored
  // now, false when the version had one already (the first stays: a profile is made once).
  virtual absl::StatusOr<bool> Insert(Tx& tx, const std::string& model, const std::string& version,
                                      const v1::ReferenceProfile& profile) = 0;
  // The summaries of the versions of `model` that have a profile, by version.
  virtual absl::StatusOr<std::map<std::string, v1::ReferenceSummary>> Summaries(
      Tx& tx, const std::string& model) = 0;
  // How many telemetry windows with requests the version has, counting up to `limit`.
  virtual absl::StatusOr<uint64_t> CountWindows(Tx& tx, const std::string& model,
                                                const std::string& version, uint64_t limit) = 0;

  // --- the fleet fallback ---
  // Only one server replica at a time makes fleet profiles: false when another holds the claim
  // (a PostgreSQL advisory lock held until the transaction ends).
  virtual absl::StatusOr<bool> ClaimFleetWork(Tx& tx) = 0;
  // Versions without a profile that have at least one window with requests (metadata: name,
  // version, inputs, outputs).
  virtual absl::StatusOr<std::vector<v1::ModelVersion>> VersionsAwaitingReference(Tx& tx) = 0;
  // The version's first `limit` windows with requests, by window start (then device, stream
  // and sequence), as the agents sent them.
  virtual absl::StatusOr<std::vector<v1::TelemetryWindow>> FirstWindows(Tx& tx,
                                                                        const std::string& model,
                                                                        const std::string& version,
                                                                        uint64_t limit) = 0;
};

// The PostgreSQL ReferenceStore.
class ReferenceRepo final : public ReferenceStore {
 public:
  absl::StatusOr<std::optional<v1::ReferenceProfile>> Get(Tx& tx, const std::string& model,
                                                          const std::string& version) override;
  absl::StatusOr<bool> Insert(Tx& tx, const std::string& model, const std::string& version,
                              const v1::ReferenceProfile& profile) override;
  absl::StatusOr<std::map<std::string, v1::ReferenceSummary>> Summaries(
      Tx& tx, const std::string& model) override;
  absl::StatusOr<uint64_t> CountWindows(Tx& tx, const std::string& model,
                                        const std::string& version, uint64_t limit) override;
  absl::StatusOr<bool> ClaimFleetWork(Tx& tx) override;
  absl::StatusOr<std::vector<v1::ModelVersion>> VersionsAwaitingReference(Tx& tx) override;
  absl::StatusOr<std::vector<v1::TelemetryWindow>> FirstWindows(Tx& tx, const std::string& model,
                                                                const std::string& version,
                                                                uint64_t limit) override;
};

}  // namespace edgefleet::server
