// Differential updates on the server: patches between artifact pairs are computed once in the
// background by a bounded worker pool, stored content-addressed in the artifact store, and
// offered to every device that holds the from-artifact when they beat the full download.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
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
};

class PatchService {
 public:
  PatchService(Transactor& db, PatchStore& repo, ArtifactStore& artifacts, ServerMetrics& metrics,
               PatchServiceOptions options);
  ~PatchService();
  PatchService(const PatchService&) = delete;
  PatchService& operator=(const PatchService&) = delete;

  // Starts the workers and re-queues computations a previous run left pending.
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

  // Blocks until the queue is empty and no computation runs (tests, shutdown).
  void WaitIdle();

 private:
  void Work();
  void Compute(const std::string& from_sha256, const std::string& to_sha256);

  Transactor& db_;
  PatchStore& repo_;
  ArtifactStore& artifacts_;
  ServerMetrics& metrics_;
  PatchServiceOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::pair<std::string, std::string>> queue_;
  int busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace edgefleet::server
