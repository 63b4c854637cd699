// RolloutService is what the admin API asks of the rollout component: create a rollout, read it,
// list them, and apply an operator action. The PostgreSQL-backed implementation lives in
// server/rollout/ (with the controller); the API's tests use a fake.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "edgefleet/v1/rollout.pb.h"
#include "server/rollout/decision.h"
#include "server/store/paging.h"

namespace edgefleet::server::rollout {

class RolloutService {
 public:
  virtual ~RolloutService() = default;

  // Validates (InvalidArgument naming the field), stores the rollout PENDING with its audit row in
  // one transaction, and answers with it. AlreadyExists when the name is taken; NotFound when the
  // model version does not exist. `actor` is the principal's name for the audit row and events.
  virtual absl::StatusOr<v1::Rollout> Create(const v1::CreateRolloutRequest& request,
                                             const std::string& actor) = 0;
  // The rollout with its waves (state, counts, gate results) and its decision events.
  // NotFound "rollout NAME not found".
  virtual absl::StatusOr<v1::Rollout> Get(const std::string& name) = 0;
  // One page of rollouts ordered by name, without their events.
  virtual absl::StatusOr<Page<v1::Rollout>> List(const PageRequest& page) = 0;
  // Applies an operator action (pause, resume, promote, abort, roll back) with its event and audit
  // row in one transaction and answers with the rollout after it. NotFound; FailedPrecondition
  // when the action is impossible in the rollout's state (the message says why and what is).
  virtual absl::StatusOr<v1::Rollout> Act(const std::string& name, OperatorAction action,
                                          const std::string& reason, const std::string& actor) = 0;
};

}  // namespace edgefleet::server::rollout
