// Fixed-size pool of libpqxx connections shared by all repositories (adapter-internal header:
// include it only from server/store/*.cpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::server::internal {

class ConnectionPool {
 public:
  // A borrowed connection, returned to the pool on destruction. MarkBroken() makes the pool
  // drop it and open a fresh one for the next borrower.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    pqxx::connection& connection() { return *pool_->slots_[slot_]; }
    void MarkBroken() { broken_ = true; }

   private:
    friend class ConnectionPool;
    Lease(ConnectionPool* pool, size_t slot) : pool_(pool), slot_(slot) {}
    ConnectionPool* pool_;
    size_t slot_;
    bool broken_ = false;
  };

  ConnectionPool(std::string url, std::string redacted_url, int size,
                 std::chrono::milliseconds acquire_timeout);

  // Opens one connection now so a bad url fails at startup rather than on first use.
  absl::Status Warm();
  // Waits up to acquire_timeout for a free slot; (re)connects it when it is empty or closed.
  absl::StatusOr<Lease> Acquire();

 private:
  void Release(size_t slot, bool broken);
  absl::Status ConnectSlot(size_t slot);

  const std::string url_;
  const std::string redacted_url_;
  const std::chrono::milliseconds acquire_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> slots_;
  std::vector<bool> in_use_;
};

}  // namespace edgefleet::server::internal
