// Composition root of edgefleet-agent: local state, enrollment, the check-in loop with jitter
// and backoff, updates, telemetry and the local inference API.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "agent/engine/inference_engine.h"
#include "common/core/clock.h"
#include "edgefleet/v1/config.pb.h"

namespace edgefleet::agent {

class Agent {
 public:
  static v1::AgentConfig WithDefaults(v1::AgentConfig config);

  // Opens the state directory, serves committed models from disk and opens the local socket.
  // Needs no server: enrollment and check-ins happen in Run().
  static absl::StatusOr<std::unique_ptr<Agent>> Start(const v1::AgentConfig& config,
                                                      const Clock& clock,
                                                      std::unique_ptr<EngineFactory> engines);
  virtual ~Agent() = default;

  // Enrolls if needed, then checks in until Stop().
  virtual void Run() = 0;
  virtual void Stop() = 0;
};

}  // namespace edgefleet::agent
