// A map shared by threads that holds at most `capacity` entries, for values derived from keys
// that do not go stale by themselves (parsed text, a version's stored profile, a signed
// manifest the caller dates): when full it starts over instead of tracking use, which is enough
// for the few distinct keys a fleet's calls repeat.
#pragma once

#include <cstddef>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace edgefleet {

template <class Key, class Value>
class BoundedCache {
 public:
  explicit BoundedCache(size_t capacity) : capacity_(capacity) {}

  // A copy of the value stored for `key`, if any: keep values cheap to copy (a shared_ptr).
  std::optional<Value> Find(const Key& key) const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }

  void Put(Key key, Value value) {
    absl::MutexLock lock(&mu_);
    if (entries_.size() >= capacity_) entries_.clear();
    entries_.insert_or_assign(std::move(key), std::move(value));
  }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Key, Value> entries_;  // guarded by mu_
};

}  // namespace edgefleet
