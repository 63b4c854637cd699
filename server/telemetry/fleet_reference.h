// The fleet-derived reference: a model version pushed without a reference sample gets one made
// from its first K telemetry windows across the fleet (with requests, binned by the default
// profile), merged once and stored with source FLEET. It runs on a short tick of its own rather
// than at ingest: an upload's transaction stays as short as before, and the tick's claim (an
// advisory lock) lets one server replica at a time do the work.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "server/store/database.h"
#include "server/store/reference_repo.h"

namespace edgefleet::server::telemetry {

class FleetReferences {
 public:
  // `windows_needed` is K (ServerConfig.fleet_reference_windows).
  FleetReferences(Transactor& db, ReferenceStore& store, uint64_t windows_needed)
      : db_(db), store_(store), windows_needed_(windows_needed) {}

  // One pass: makes and stores the fleet profile of every version without one that has K
  // windows following the default profile; returns how many it made. Makes none while another
  // replica holds the claim.
  absl::StatusOr<int> MakeDue();

  uint64_t windows_needed() const { return windows_needed_; }

 private:
  Transactor& db_;
  ReferenceStore& store_;
  const uint64_t windows_needed_;
};

}  // namespace edgefleet::server::telemetry
