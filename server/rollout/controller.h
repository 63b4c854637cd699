// The rollout controller: RolloutService on a RolloutStore, and the loop that moves rollouts
// forward. Every change of a rollout happens in one transaction that holds the rollout's row
// lock (RolloutStore::Lock), so with several server replicas on one database exactly one acts on
// a rollout at a time, and an operator action racing the controller ends in one consistent
// state. All state lives in the store: a restarted controller continues where it was.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/core/clock.h"
#include "server/metrics/server_metrics.h"
#include "server/rollout/rollout_service.h"
#include "server/store/audit_repo.h"
#include "server/store/database.h"
#include "server/store/inference_sample_repo.h"
#include "server/store/rollout_repo.h"

namespace edgefleet::server::rollout {

struct ControllerOptions {
  std::chrono::milliseconds interval{5000};  // between evaluations of every rollout
  // Queued device changes (enrollments, label changes) placed per pass; the rest wait for the
  // next pass.
  size_t max_placements_per_pass = 10000;
};

class RolloutController final : public RolloutService {
 public:
  // `metrics` may be null (tests). `samples` feeds the inference gates.
  RolloutController(Transactor& db, RolloutStore& rollouts, AuditStore& audit,
                    InferenceSampleSource& samples, const Clock& clock, ServerMetrics* metrics,
                    ControllerOptions options = {});
  ~RolloutController() override;  // stops the loop

  RolloutController(const RolloutController&) = delete;
  RolloutController& operator=(const RolloutController&) = delete;

  absl::StatusOr<v1::Rollout> Create(const v1::CreateRolloutRequest& request,
                                     const std::string& actor) override;
  absl::StatusOr<v1::Rollout> Get(const std::string& name) override;
  absl::StatusOr<Page<v1::Rollout>> List(const PageRequest& page) override;
  absl::StatusOr<v1::Rollout> Act(const std::string& name, OperatorAction action,
                                  const std::string& reason, const std::string& actor) override;

  // One evaluation of rollout `name` in one transaction (what the loop does for each rollout):
  // skipped when another transaction holds its lease. For PENDING and RUNNING rollouts: late
  // matching devices join the current wave, then Decide, store the progress and the event (a
  // hold only when it differs from the last event), and act (assign a wave's devices, roll
  // back). For SUCCEEDED ones: late matching devices join the last wave.
  absl::Status Evaluate(const std::string& name);
  // Evaluate for every rollout the store names (RolloutStore::NamesToEvaluate: the pending and
  // running ones, and the succeeded ones a newly active or relabelled device matches); the
  // first error, after trying them all. The queued device changes are forgotten only once every
  // rollout was evaluated, so a failure or a lease held elsewhere leaves them for the next pass.
  absl::Status EvaluateAll();

  // Starts the loop on its own thread: EvaluateAll every interval, and at once after Create or
  // an operator action (an operator waits for their effect, not for the next tick), until Stop.
  void Start();
  // Stops the loop and waits for an evaluation in progress to end. Idempotent.
  void Stop();

 private:
  absl::StatusOr<v1::Rollout> Describe(Tx& tx, const StoredRollout& stored, bool with_events);
  // The current wave's canaries against control (inference_gates.h) at `now_unix`: reads its
  // canaries, then one sample of windows per side. `matching` is the rollout's matching devices.
  absl::StatusOr<InferenceComparison> ObserveInference(Tx& tx, const RolloutDefinition& definition,
                                                       const StoredRollout& stored,
                                                       const std::vector<MatchingDevice>& matching,
                                                       int64_t now_unix);
  // Evaluate; false when another transaction held the rollout's lease.
  absl::StatusOr<bool> EvaluateUnderLease(const std::string& name);
  // `done`, after having the loop (if started) evaluate now instead of at its next tick when
  // `done` is OK: what Create and Act return.
  absl::StatusOr<v1::Rollout> WakeLoopIfOk(absl::StatusOr<v1::Rollout> done);
  void Loop();

  Transactor& db_;
  RolloutStore& rollouts_;
  AuditStore& audit_;
  InferenceSampleSource& samples_;
  const Clock& clock_;
  ServerMetrics* metrics_;
  ControllerOptions options_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool wake_requested_ = false;
  std::thread thread_;
};

// "pause", "rollback": how audit rows and messages name an operator action.
const char* ActionName(OperatorAction action);

}  // namespace edgefleet::server::rollout
