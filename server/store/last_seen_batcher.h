// LastSeenBatcher keeps the devices' last check-in times in memory and writes them in one
// statement per flush (DeviceStore::TouchLastSeen): every `interval` on its own thread, and at
// Stop. A check-in where nothing changed then writes nothing itself. A crash (not a clean stop)
// loses at most one interval of last-seen times; each device's next check-in sets it again.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/store/database.h"
#include "server/store/device_repo.h"

namespace edgefleet::server {

class LastSeenBatcher {
 public:
  LastSeenBatcher(Transactor& db, DeviceStore& devices, std::chrono::milliseconds interval);
  ~LastSeenBatcher();  // Stop

  LastSeenBatcher(const LastSeenBatcher&) = delete;
  LastSeenBatcher& operator=(const LastSeenBatcher&) = delete;

  // Remembers that `device_id` was seen at `seen_unix` (the latest time per device wins).
  void Record(const std::string& device_id, int64_t seen_unix);
  // Writes what was recorded in one transaction. On failure the times are kept (newer ones
  // recorded meanwhile win) for the next flush, and the error is returned.
  absl::Status Flush();
  // Devices recorded and not yet written.
  size_t pending() const;

  // Starts flushing every interval on its own thread.
  void Start();
  // Stops the thread, then flushes what is left (a clean shutdown loses nothing). Idempotent.
  void Stop();

 private:
  void Loop();

  Transactor& db_;
  DeviceStore& devices_;
  const std::chrono::milliseconds interval_;

  mutable std::mutex mu_;
  std::map<std::string, int64_t> seen_;  // guarded by mu_
  std::mutex flush_mu_;                  // one flush at a time
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace edgefleet::server
