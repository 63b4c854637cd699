// Differential updates on the server: patches between artifact pairs are computed once in the
// background by a bounded worker pool, stored content-addressed in the artifact store, and
// offered to every device that holds the from-artifact when they beat the full download. Work is
// claimed in the database with a lease (PatchStore::Claim), so replicas sharing the database
// and the artifact store compute each pair once, and a pair whose replica died mid-computation
// is taken over by another once the lease expires.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "edgefleet/v1/device.pb.h"
#include "server/artifacts/artifact_store.h"
#include "server/metrics/server_metrics.h"
#include "server/store/patch_repo.h"

namespace edgefleet::server {

struct PatchServiceOptions {
  int workers = 2;
  std::chrono::milliseconds time_budget{std::chrono::seconds(120)};
  // A claimed computation's lease, renewed every third of it while the computation runs.
  std::chrono::seconds lease{60};
  // Computations started for one pair (replicas that died computing it) before it is failed.
  int max_attempts = 3;
  // How often idle workers look for pairs other replicas queued or left with an expired lease.
  std::chrono::milliseconds poll_interval{std::chrono::seconds(5)};
  // Names this replica in the leases it holds; a random name when empty.
  std::string owner{};
};

class PatchService {
 public:
  PatchService(Transactor& db, PatchStore& repo, ArtifactStore& artifacts, ServerMetrics& metrics,
               PatchServiceOptions options);
  ~PatchService();
  PatchService(const PatchService&) = delete;
  PatchService& operator=(const PatchService&) = delete;

  // Starts the workers; they compute pending pairs nobody holds (queued here, by another
  // replica, or left by a replica that stopped) until the service is destroyed.
  absl::Status Start();

  // Queues the (from, to) pair unless it is known already. Never blocks on the computation.
  absl::Status Request(const std::string& from_sha256, const std::string& to_sha256);

  // The patch to offer a device holding `from` that should get `to` (full size `to_size`),
  // whose agent decodes patch formats up to `decoder_version` (its inventory's
  // patch_decoder_version); nullopt when none is ready, it would not be smaller, or the agent
  // could not apply it (a computation is queued if needed).
  absl::StatusOr<std::optional<v1::PatchOffer>> Offer(const std::string& from_sha256,
                                                      const std::string& to_sha256,
                                                      uint64_t to_size_bytes,
                                                      uint32_t decoder_version);

  // Blocks until a worker found nothing left to claim after this call began and no computation
  // of this service runs (tests). Another replica may still be computing a pair it claimed.
  void WaitIdle();

  const std::string& owner() const { return owner_; }

 private:
  void Work();
  void RenewLeases();
  void Compute(const PatchClaim& claim);

  Transactor& db_;
  PatchStore& repo_;
  ArtifactStore& artifacts_;
  ServerMetrics& metrics_;
  PatchServiceOptions options_;
  const std::string owner_;

  std::mutex mu_;
  std::condition_variable cv_;       // new work may be claimable, or stopping
  std::condition_variable idle_cv_;  // a worker went idle
  uint64_t wake_seq_ = 0;            // bumped by Request and WaitIdle
  uint64_t quiet_seq_ = 0;           // the latest wake_seq_ a claim found nothing after
  int busy_ = 0;                     // workers claiming or computing
  std::set<std::pair<std::string, std::string>> in_flight_;  // pairs whose lease we renew
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread renewer_;
};

}  // namespace edgefleet::server
