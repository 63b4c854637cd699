#include "tests/server/rollout/fake_rollout_stores.h"

#include "absl/strings/str_cat.h"

namespace edgefleet::server::rollout::testing {
namespace {

absl::Status NotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("rollout ", name, " not found"));
}

bool Refused(v1::FailureReason reason) {
  return reason == v1::FAILURE_REASON_SIGNATURE || reason == v1::FAILURE_REASON_EXPIRED ||
         reason == v1::FAILURE_REASON_ROLLBACK || reason == v1::FAILURE_REASON_NAME;
}

}  // namespace

void FakeRolloutStores::Report(const std::string& device_id, v1::DeploymentTargetState state,
                               v1::FailureReason reason) {
  for (FakeTarget& t : data.targets) {
    if (t.device_id == device_id && !t.superseded && !t.rolled_back) {
      t.state = state;
      t.reason = reason;
    }
  }
}

const FakeTarget* FakeRolloutStores::LiveTarget(const std::string& device_id) const {
  for (const FakeTarget& t : data.targets) {
    if (t.device_id == device_id && !t.superseded) return &t;
  }
  return nullptr;
}

absl::StatusOr<StoredRollout> FakeRolloutStores::Insert(Tx&, const v1::Rollout& definition,
                                                        const std::string& created_by,
                                                        int64_t now_unix) {
  if (data.rollouts.count(definition.name()) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("rollout ", definition.name(), " already exists"));
  }
  StoredRollout stored;
  stored.rollout = definition;
  stored.rollout.set_created_by(created_by);
  stored.rollout.mutable_created_at()->set_seconds(now_unix);
  stored.deployment_id = data.next_deployment_id++;
  stored.rollout.set_metadata_version(static_cast<uint64_t>(stored.deployment_id));
  data.rollouts[definition.name()] = stored;
  return stored;
}

absl::StatusOr<std::optional<StoredRollout>> FakeRolloutStores::Lock(Tx& tx,
                                                                     const std::string& name,
                                                                     bool skip_locked) {
  auto found = Find(tx, name);
  if (!found.ok()) return found.status();
  if (skip_locked && leased_elsewhere.count(name) > 0) return std::optional<StoredRollout>();
  return std::optional<StoredRollout>(*std::move(found));
}

absl::StatusOr<StoredRollout> FakeRolloutStores::Find(Tx&, const std::string& name) {
  auto it = data.rollouts.find(name);
  if (it == data.rollouts.end()) return NotFound(name);
  return it->second;
}

absl::StatusOr<Page<StoredRollout>> FakeRolloutStores::ListPage(Tx&, const PageRequest& page) {
  std::vector<StoredRollout> rows;
  for (const auto& [name, r] : data.rollouts) {
    if (name > page.after) rows.push_back(r);
  }
  return FinishPage(std::move(rows), page.size,
                    [](const StoredRollout& r) { return r.rollout.name(); });
}

absl::StatusOr<RolloutsToEvaluate> FakeRolloutStores::NamesToEvaluate(Tx&, size_t) {
  RolloutsToEvaluate out;
  for (const auto& [name, r] : data.rollouts) {
    if (r.progress.state == v1::ROLLOUT_STATE_PENDING ||
        r.progress.state == v1::ROLLOUT_STATE_RUNNING) {
      out.names.push_back(name);
    }
  }
  return out;
}

absl::Status FakeRolloutStores::ForgetPlacements(Tx&, const std::vector<int64_t>&) {
  return absl::OkStatus();
}

absl::Status FakeRolloutStores::SaveProgress(Tx&, const std::string& name,
                                             const RolloutProgress& progress,
                                             uint64_t matching_devices, int64_t now_unix) {
  auto it = data.rollouts.find(name);
  if (it == data.rollouts.end()) return NotFound(name);
  StoredRollout& r = it->second;
  r.progress = progress;
  r.rollout.set_state(progress.state);
  r.rollout.set_current_wave(static_cast<uint32_t>(progress.current_wave));
  r.rollout.set_promote_requested(progress.promote_requested);
  r.rollout.set_matching_devices(matching_devices);
  r.rollout.mutable_updated_at()->set_seconds(now_unix);
  return absl::OkStatus();
}

absl::Status FakeRolloutStores::AddEvent(Tx&, const std::string& name,
                                         const v1::RolloutEvent& event) {
  data.events[name].push_back(event);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::RolloutEvent>> FakeRolloutStores::Events(Tx&,
                                                                        const std::string& name) {
  return data.events[name];
}

absl::StatusOr<std::optional<v1::RolloutEvent>> FakeRolloutStores::LastEvent(
    Tx&, const std::string& name) {
  const auto& events = data.events[name];
  if (events.empty()) return std::optional<v1::RolloutEvent>();
  return std::optional<v1::RolloutEvent>(events.back());
}

absl::StatusOr<std::vector<WaveCounts>> FakeRolloutStores::CountWaves(
    Tx&, int64_t deployment_id, const std::vector<std::chrono::seconds>& serving_timeouts,
    int64_t now_unix) {
  std::vector<WaveCounts> counts(serving_timeouts.size());
  for (const FakeTarget& t : data.targets) {
    if (t.deployment_id != deployment_id || t.superseded || t.wave >= counts.size()) continue;
    WaveCounts& c = counts[t.wave];
    ++c.targeted;
    if (t.state == v1::DEPLOYMENT_TARGET_STATE_SERVING) {
      ++c.serving;
    } else if (t.state == v1::DEPLOYMENT_TARGET_STATE_FAILED) {
      if (Refused(t.reason)) {
        ++c.refused;
      } else if (t.reason == v1::FAILURE_REASON_PROBATION_FAILED) {
        ++c.probation_failed;
      } else {
        ++c.install_failed;
      }
    } else if (t.targeted_at + serving_timeouts[t.wave].count() <= now_unix) {
      ++c.timed_out;
    }
  }
  return counts;
}

absl::StatusOr<std::vector<MatchingDevice>> FakeRolloutStores::MatchingDevices(
    Tx&, int64_t deployment_id) {
  Labels selector;
  for (const auto& [name, r] : data.rollouts) {
    if (r.deployment_id != deployment_id) continue;
    auto parsed = ParseLabelSelector(r.rollout.label_selector());
    if (!parsed.ok()) return parsed.status();
    selector = *parsed;
  }
  std::vector<MatchingDevice> out;
  for (const auto& [id, labels] : data.devices) {
    bool matches = true;
    for (const auto& [k, v] : selector) {
      auto it = labels.find(k);
      matches = matches && it != labels.end() && it->second == v;
    }
    bool assigned = false;
    bool newer = false;
    for (const FakeTarget& t : data.targets) {
      if (t.device_id != id) continue;
      assigned = assigned || t.deployment_id == deployment_id;
      newer = newer || (t.deployment_id > deployment_id && !t.superseded);
    }
    if (!matches || newer) continue;
    auto hw = labels.find("hw");
    out.push_back({id, hw == labels.end() ? "" : hw->second, assigned});
  }
  return out;
}

absl::Status FakeRolloutStores::Assign(Tx&, int64_t deployment_id, uint32_t wave,
                                       const std::vector<std::string>& device_ids,
                                       int64_t now_unix) {
  for (const std::string& id : device_ids) {
    bool exists = false;
    for (FakeTarget& t : data.targets) {
      if (t.device_id != id) continue;
      exists = exists || t.deployment_id == deployment_id;
      if (t.deployment_id < deployment_id) t.superseded = true;
    }
    if (!exists) {
      FakeTarget target;
      target.device_id = id;
      target.deployment_id = deployment_id;
      target.wave = wave;
      target.targeted_at = now_unix;
      auto running = data.running.find(id);
      if (running != data.running.end()) target.previous_version = running->second;
      data.targets.push_back(target);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeRolloutStores::RollBack(Tx&, int64_t deployment_id, int64_t) {
  uint64_t n = 0;
  for (FakeTarget& t : data.targets) {
    if (t.deployment_id == deployment_id && !t.superseded && !t.rolled_back) {
      t.rolled_back = true;
      ++n;
    }
  }
  return n;
}

absl::StatusOr<bool> FakeRolloutStores::HasTargets(Tx&, int64_t deployment_id) {
  for (const FakeTarget& t : data.targets) {
    if (t.deployment_id == deployment_id) return true;
  }
  return false;
}

absl::StatusOr<std::map<std::string, uint64_t>> FakeRolloutStores::CountRolloutsByState(Tx&) {
  std::map<std::string, uint64_t> out;
  for (const auto& [name, r] : data.rollouts) ++out[v1::RolloutState_Name(r.progress.state)];
  return out;
}

absl::StatusOr<std::map<std::string, uint64_t>> FakeRolloutStores::CountTargetsByState(Tx&) {
  std::map<std::string, uint64_t> out;
  for (const FakeTarget& t : data.targets) {
    ++out[t.rolled_back ? "rolled_back" : v1::DeploymentTargetState_Name(t.state)];
  }
  return out;
}

absl::Status FakeRolloutStores::Record(Tx&, const std::string& actor, const std::string& action,
                                       const std::string&) {
  data.audit.push_back(absl::StrCat(actor, " ", action));
  return absl::OkStatus();
}

absl::Status FakeTransactor::Run(absl::string_view name,
                                 const std::function<absl::Status(Tx&)>& body) {
  for (int attempt = 0; attempt < retries; ++attempt) {
    const FakeRolloutData before = stores_.data;
    Tx tx = MakeTx(name, nullptr);
    (void)body(tx);  // an attempt the database rolled back: its outcome never counts
    stores_.data = before;
  }
  const FakeRolloutData before = stores_.data;
  Tx tx = MakeTx(name, nullptr);
  absl::Status status = body(tx);
  if (!status.ok()) stores_.data = before;
  return status;
}

absl::StatusOr<std::vector<InferenceSampleSource::Canary>> FakeRolloutStores::WaveCanaries(
    Tx&, int64_t deployment_id, uint32_t wave) {
  std::vector<Canary> out;
  for (const FakeTarget& t : data.targets) {
    if (t.deployment_id == deployment_id && t.wave == wave && !t.superseded && !t.rolled_back &&
        t.state == v1::DEPLOYMENT_TARGET_STATE_SERVING) {
      out.push_back(Canary{t.device_id, t.previous_version});
    }
  }
  return out;
}

absl::StatusOr<InferenceSide> FakeRolloutStores::Sample(Tx&, const std::string&,
                                                        const std::string& version,
                                                        const std::vector<std::string>& device_ids,
                                                        int64_t from_unix, int64_t to_unix) {
  sample_calls.push_back({version, device_ids, from_unix, to_unix});
  const std::set<std::string> ids(device_ids.begin(), device_ids.end());
  InferenceSideBuilder side;
  for (const FakeWindow& w : data.windows) {
    if (w.version != version || !ids.contains(w.device_id) || w.start_unix < from_unix ||
        w.start_unix >= to_unix) {
      continue;
    }
    v1::TelemetryWindow window = w.window;
    window.mutable_window_start()->set_seconds(w.start_unix);
    if (auto s = side.Add(w.device_id, window); !s.ok()) return s;
  }
  return std::move(side).Finish();
}

}  // namespace edgefleet::server::rollout::testing
