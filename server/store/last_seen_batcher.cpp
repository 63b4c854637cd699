#include "server/store/last_seen_batcher.h"

#include <algorithm>
#include <utility>

#include "common/core/logging.h"

namespace edgefleet::server {

LastSeenBatcher::LastSeenBatcher(Transactor& db, DeviceStore& devices,
                                 std::chrono::milliseconds interval)
    : db_(db), devices_(devices), interval_(interval) {}

LastSeenBatcher::~LastSeenBatcher() { Stop(); }

void LastSeenBatcher::Record(const std::string& device_id, int64_t seen_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t& seen = seen_[device_id];
  seen = std::max(seen, seen_unix);
}

size_t LastSeenBatcher::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_.size();
}

absl::Status LastSeenBatcher::Flush() {
  std::lock_guard<std::mutex> flushing(flush_mu_);
  std::map<std::string, int64_t> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(seen_);
  }
  if (batch.empty()) return absl::OkStatus();
  absl::Status written =
      db_.Transact("record last seen", [&](Tx& tx) { return devices_.TouchLastSeen(tx, batch); });
  if (!written.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, seen] : batch) {
      int64_t& kept = seen_[id];
      kept = std::max(kept, seen);
    }
  }
  return written;
}

void LastSeenBatcher::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void LastSeenBatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (absl::Status s = Flush(); !s.ok()) {
    Logger("store")->warn("last seen not written at shutdown devices={} error={}", pending(),
                          s.ToString());
  }
}

void LastSeenBatcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, interval_, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (absl::Status s = Flush(); !s.ok()) {
      Logger("store")->warn("last seen not written, kept for the next flush error={}",
                            s.ToString());
    }
    lock.lock();
  }
}

}  // namespace edgefleet::server
