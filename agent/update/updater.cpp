#include "agent/update/updater.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "agent/telemetry/window_recorder.h"
#include "common/core/limits.h"
#include "common/core/logging.h"
#include "common/core/names.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta_files.h"
#include "common/manifest/manifest.h"
#include "common/manifest/verification.h"
#include "common/telemetry/reference_profile.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;

constexpr size_t kHashBufferBytes = 1 << 16;
// Room a download leaves free on the state directory's disk: the state database, the outbox and
// the logs must still be writable when the update is refused or the device keeps running.
constexpr uint64_t kDiskReserveBytes = 1 << 20;

absl::Status NoSpace(std::string_view message) {
  return VerificationError(v1::FAILURE_REASON_NO_SPACE, message);
}

// Refuses a download of `needed` more bytes into `dir` when its disk cannot hold them and the
// reserve: better refused at once with the numbers than failed when the disk is full.
absl::Status CheckRoom(const fs::path& dir, uint64_t needed) {
  std::error_code ec;
  const fs::space_info space = fs::space(dir, ec);
  if (ec) return absl::OkStatus();  // unknown: the write itself reports a full disk
  if (space.available >= needed && space.available - needed >= kDiskReserveBytes) {
    return absl::OkStatus();
  }
  return NoSpace(absl::StrCat("not enough disk space: the download needs ", needed, " more bytes, ",
                              space.available, " are available in ", dir.string(), " (",
                              kDiskReserveBytes, " bytes are kept free for the agent)"));
}

void FsyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Hashes the bytes already on disk so a resumed download verifies the whole file.
absl::StatusOr<crypto::Sha256> HashPrefix(const fs::path& path, uint64_t size) {
  crypto::Sha256 hash;
  std::ifstream in(path, std::ios::binary);
  std::string buffer(kHashBufferBytes, '\0');
  uint64_t left = size;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, buffer.size()));
    in.read(buffer.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n)
      return absl::DataLossError("partial download unreadable");
    hash.Update(std::string_view(buffer.data(), n));
    left -= n;
  }
  return hash;
}

// Where to stage a release: its version's directory, unless an installed (current or previous)
// version lives there. A signed release may reuse a version name with other bytes, and staging
// over the installed file, or deleting the directory when activation fails, would destroy it.
absl::StatusOr<fs::path> StagingDir(StateStore& state, const fs::path& model_dir,
                                    const std::string& model, const std::string& version,
                                    const std::string& hex) {
  auto current = state.Current(model);
  if (!current.ok()) return current.status();
  auto previous = state.Previous(model);
  if (!previous.ok()) return previous.status();
  auto taken = [&](const fs::path& dir) {
    for (const auto* slot : {&*current, &*previous}) {
      if (slot->has_value() && fs::path((*slot)->path).parent_path() == dir) return true;
    }
    return false;
  };
  // At most two directories are taken, so one of three candidates is free.
  for (const std::string& name :
       {version, absl::StrCat(version, "-", hex.substr(0, 16)), absl::StrCat(version, "-", hex)}) {
    if (!taken(model_dir / name)) return model_dir / name;
  }
  return absl::InternalError(absl::StrCat("no free staging directory for ", model, " ", version));
}

}  // namespace

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, const manifest::ReleaseKeyring& keys,
                 const Clock& clock, std::string state_dir, RetryPolicy retry,
                 ProbationPolicy probation)
    : Updater(state, host, engines, transport, nullptr, &keys, clock, std::move(state_dir), retry,
              probation) {}

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, const crypto::Verifier& release_root,
                 const Clock& clock, std::string state_dir, RetryPolicy retry,
                 ProbationPolicy probation)
    // The caller owns `release_root` and outlives this updater: borrow it without owning.
    : Updater(state, host, engines, transport,
              std::make_unique<manifest::ReleaseKeyring>(
                  std::shared_ptr<const crypto::Verifier>(std::shared_ptr<void>(), &release_root)),
              nullptr, clock, std::move(state_dir), retry, probation) {}

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, std::unique_ptr<manifest::ReleaseKeyring> own_keys,
                 const manifest::ReleaseKeyring* keys, const Clock& clock, std::string state_dir,
                 RetryPolicy retry, ProbationPolicy probation)
    : state_(state),
      host_(host),
      engines_(engines),
      transport_(transport),
      own_keys_(std::move(own_keys)),
      keys_(keys != nullptr ? *keys : *own_keys_),
      clock_(clock),
      state_dir_(std::move(state_dir)),
      retry_(retry),
      probation_(probation) {}

Updater::ReleaseId Updater::ReleaseIdOf(const v1::DesiredModel& desired) {
  const v1::ModelVersion& metadata = desired.metadata();
  ReleaseId id{metadata.model_name(), metadata.version(), metadata.artifact_sha256(),
               metadata.metadata_version()};
  // Before verification the manifest is only a name for the offer: a forged one can make the
  // device try again, which a man in the middle can cause anyway by changing any field.
  if (auto manifest = manifest::DecodeCanonical(desired.manifest().canonical_manifest());
      manifest.ok()) {
    id.metadata_version = manifest->metadata_version();
  }
  return id;
}

void Updater::RemoveVersionFiles(const std::string& artifact_path) {
  std::error_code ec;
  fs::remove_all(fs::path(artifact_path).parent_path(), ec);
  if (ec) {
    Logger("update")->warn("cannot remove {}: {}", fs::path(artifact_path).parent_path().string(),
                           ec.message());
  }
}

absl::Status Updater::Serve(const StateStore::InstalledVersion& v) {
  v1::ModelVersion metadata;
  if (!metadata.ParseFromString(v.metadata_proto)) {
    return absl::DataLossError(
        absl::StrCat("stored metadata of ", v.model_name, " ", v.version, " cannot be parsed"));
  }
  // The file on disk must still be the signed artifact: a damaged or altered file is not served.
  auto digest = crypto::Sha256File(v.path);
  if (!digest.ok()) {
    return VerificationError(v1::FAILURE_REASON_DIGEST, absl::StrCat("stored artifact unreadable: ",
                                                                     digest.status().message()));
  }
  if (*digest != v.artifact_sha256) {
    return VerificationError(v1::FAILURE_REASON_DIGEST,
                             absl::StrCat(v.path, " no longer matches its signed SHA-256"));
  }
  auto engine = engines_.Load(v.path);
  if (!engine.ok()) {
    return VerificationError(v1::FAILURE_REASON_LOAD, std::string(engine.status().message()));
  }
  if (auto s = WarmUp(**engine, metadata); !s.ok()) {
    return VerificationError(v1::FAILURE_REASON_WARMUP, std::string(s.message()));
  }
  host_.Swap(std::make_shared<ServingModel>(ServingModel{
      v.model_name, v.version, metadata, std::shared_ptr<InferenceEngine>(*std::move(engine)),
      std::make_shared<VersionMonitor>()}));
  return absl::OkStatus();
}

void Updater::Repair(const StateStore::InstalledVersion& v, const absl::Status& error) {
  auto log = Logger("update");
  std::string meanwhile = "nothing serves meanwhile";
  absl::StatusOr<std::optional<StateStore::InstalledVersion>> dropped;
  auto previous = state_.Previous(v.model_name);
  absl::Status previous_ok = !previous.ok() ? previous.status()
                             : !*previous   ? absl::NotFoundError("no previous version")
                                            : Serve(**previous);
  if (previous_ok.ok()) {
    // Durably first: a crash before the files go leaves only an unused directory.
    dropped = state_.RestorePrevious(v.model_name);
    meanwhile = absl::StrCat("version ", (*previous)->version, " serves meanwhile");
  } else {
    log->warn("previous version of model={} cannot serve: {}", v.model_name,
              previous_ok.ToString());
    dropped = state_.DropCurrent(v.model_name);
  }
  if (!dropped.ok()) {
    // The damaged version stays current in the state, so it is not fetched again until the next
    // start, which detects it again.
    log->error("cannot forget damaged model={} version={}: {}", v.model_name, v.version,
               dropped.status().ToString());
  } else if (*dropped) {
    RemoveVersionFiles((*dropped)->path);
  }
  const v1::FailureReason reason = FailureReasonOf(error, v1::FAILURE_REASON_DIGEST);
  const std::string detail =
      absl::StrCat("stored model failed its check at start-up (", error.message(), "); ", meanwhile,
                   "; fetching ", v.version, " again");
  // Not an attempt of the release: it is fetched again at once, with its full retry budget.
  StateStore::UpdateFailure failure{v.model_name,
                                    v.version,
                                    v.artifact_sha256,
                                    v.metadata_version,
                                    0,
                                    ToUnixSeconds(clock_.Now()),
                                    reason,
                                    detail};
  if (auto s = state_.SaveFailure(failure); !s.ok()) {
    log->error("cannot record failure of model={}: {}", v.model_name, s.ToString());
  }
  Report(v.model_name, v.version, v1::UPDATE_EVENT_KIND_FAILED, reason, detail);
}

absl::Status Updater::RestoreFromDisk() {
  auto log = Logger("update");
  absl::Status first_error;
  // The saved states first: a rollback changes which version is current.
  auto records = state_.AllUpdates();
  if (!records.ok()) {
    log->error("cannot read update states: {}", records.status().ToString());
    first_error.Update(records.status());
  } else {
    for (const StateStore::UpdateRecord& r : *records) {
      Job job{ReleaseId{r.model_name, r.version, r.artifact_sha256, r.metadata_version}};
      job.restarts = r.restarts;
      job.fallback = r.reason_code != 0 ? static_cast<v1::FailureReason>(r.reason_code)
                                        : v1::FAILURE_REASON_LOAD;
      job.error = absl::InternalError(r.detail.empty() ? "interrupted by a restart of the agent"
                                                       : r.detail);
      UpdateEvent event = UpdateEvent::kRestarted;
      if (r.phase == UpdateState::kProbation) {
        job.restarts = r.restarts + 1;
        if (job.restarts >= probation_.crash_limit) {
          event = UpdateEvent::kRestartedInCrashLoop;
          job.error = VerificationError(
              v1::FAILURE_REASON_PROBATION_FAILED,
              absl::StrCat("the agent restarted ", job.restarts, " times while version ", r.version,
                           " was on probation (crash limit ", probation_.crash_limit, ")"));
        }
      } else if (r.phase == UpdateState::kActivating) {
        job.error = VerificationError(v1::FAILURE_REASON_LOAD,
                                      "the agent stopped while activating this version");
      }
      log->info("update of model={} version={} found in state {} at start-up", r.model_name,
                r.version, UpdatePhaseName(r.phase));
      if (absl::Status s = Drive(job, r.phase, event); !s.ok()) {
        log->warn("update of model={} version={}: {}", r.model_name, r.version, s.ToString());
        // A stored model that failed its check, like those found below.
        if (FailureReasonOf(s) == v1::FAILURE_REASON_DIGEST) first_error.Update(s);
      }
    }
  }

  auto installed = state_.AllCurrent();
  if (!installed.ok()) return installed.status();
  for (const auto& v : *installed) {
    // Already served by a resumed probation or a rollback.
    if (auto serving = host_.Get(v.model_name);
        serving && serving->version == v.version &&
        serving->metadata.artifact_sha256() == v.artifact_sha256) {
      continue;
    }
    absl::Status s = Serve(v);
    if (!s.ok()) {
      log->error("cannot restore model={} version={}: {}", v.model_name, v.version, s.ToString());
      first_error.Update(s);
      Repair(v, s);
      continue;
    }
    log->info("restored model={} version={} from disk", v.model_name, v.version);
  }
  return first_error;
}

absl::Status Updater::SaveState(const Job& job, UpdateState state) {
  if (state == UpdateState::kIdle) return state_.ClearUpdate(job.release.model);
  StateStore::UpdateRecord record{job.release.model,
                                  job.release.version,
                                  job.release.sha256,
                                  state,
                                  std::string(job.error.message()),
                                  job.release.metadata_version,
                                  job.restarts,
                                  FailureReasonOf(job.error, job.fallback)};
  if (job.error.ok()) record.reason_code = v1::FAILURE_REASON_UNSPECIFIED;
  return state_.SaveUpdate(record);
}

absl::Status Updater::Drive(Job& job, UpdateState state, UpdateEvent event) {
  auto log = Logger("update");
  while (true) {
    absl::StatusOr<UpdateTransition> t = NextTransition(state, event);
    if (!t.ok()) {
      log->error("model={} version={}: {}", job.release.model, job.release.version,
                 t.status().ToString());
      return t.status();
    }
    if (absl::Status saved = SaveState(job, t->to); !saved.ok()) {
      // Going back to what served, recording a failure and forgetting an attempt protect the
      // device: a save never blocks them. Any other step fails.
      log->error("cannot save update state {} of model={} version={}: {}", UpdatePhaseName(t->to),
                 job.release.model, job.release.version, saved.ToString());
      if (t->to != UpdateState::kRollingBack && t->to != UpdateState::kFailed &&
          t->to != UpdateState::kIdle) {
        event = StepFailed(job, saved, v1::FAILURE_REASON_LOAD);
        continue;
      }
    }
    log->debug("model={} version={} {} --{}--> {} action={}", job.release.model,
               job.release.version, UpdatePhaseName(state), UpdateEventName(event),
               UpdatePhaseName(t->to), UpdateActionName(t->action));
    state = t->to;
    if (after_save_) after_save_(state);
    std::optional<UpdateEvent> next = Execute(t->action, job);
    if (!next) return job.result;
    event = *next;
  }
}

UpdateEvent Updater::StepFailed(Job& job, const absl::Status& error, v1::FailureReason fallback) {
  job.error = error;
  job.fallback = fallback;
  return UpdateEvent::kStepFailed;
}

std::optional<UpdateEvent> Updater::Execute(UpdateAction action, Job& job) {
  const ReleaseId& r = job.release;
  switch (action) {
    case UpdateAction::kNone:
      job.result = absl::OkStatus();
      return std::nullopt;
    case UpdateAction::kFetch:
      return Fetch(job);
    case UpdateAction::kVerify:
      // Downloads and patches are hashed while they stream in, a kept copy before it is
      // offered: the bytes about to be staged are the signed ones.
      Report(r.model, r.version, v1::UPDATE_EVENT_KIND_VERIFIED);
      return UpdateEvent::kVerified;
    case UpdateAction::kStage:
      return Stage(job);
    case UpdateAction::kActivate:
      return Activate(job);
    case UpdateAction::kWatch:
      StartWatch(job);
      job.result = absl::OkStatus();
      return std::nullopt;
    case UpdateAction::kResumeProbation:
      return ResumeProbation(job);
    case UpdateAction::kCommit:
      watches_.erase(r.model);
      // The version is committed and serving: a record left behind by a failed clear reads as
      // Committed at the next start, which forgets it.
      if (auto s = state_.ClearUpdate(r.model); !s.ok()) {
        Logger("update")->warn("cannot clear update record: {}", s.ToString());
      }
      if (job.kept) {
        Logger("update")->info("model={} version={} served from the kept copy, no download",
                               r.model, r.version);
      }
      Succeeded(r);
      job.result = absl::OkStatus();
      return std::nullopt;
    case UpdateAction::kRollBack:
      RollBack(job);
      return UpdateEvent::kRolledBack;
    case UpdateAction::kRecordFailure:
      job.result = Fail(r, job.error, job.fallback);
      return std::nullopt;
    case UpdateAction::kRepair:
      watches_.erase(r.model);
      Repair(*job.kept, job.error);
      job.result = job.error;
      return std::nullopt;
  }
  return std::nullopt;
}

void Updater::Report(const std::string& model, const std::string& version, v1::UpdateEventKind kind,
                     v1::FailureReason reason, const std::string& detail) {
  v1::UpdateEvent event;
  event.set_model_name(model);
  event.set_version(version);
  event.set_kind(kind);
  event.set_reason(reason);
  event.set_detail(FitText(detail, RequestLimits::kDetailBytes));  // or the server refuses it
  event.mutable_occurred_at()->set_seconds(ToUnixSeconds(clock_.Now()));
  if (auto s = state_.Enqueue(StateStore::OutboxKind::kUpdateEvent, event.SerializeAsString());
      !s.ok()) {
    Logger("update")->warn("cannot queue update event: {}", s.ToString());
  }
}

absl::Status Updater::FlushEvents() {
  while (true) {
    auto items = state_.Peek(StateStore::OutboxKind::kUpdateEvent, 100);
    if (!items.ok()) return items.status();
    if (items->empty()) return absl::OkStatus();
    v1::ReportEventRequest request;
    std::vector<int64_t> sent;
    for (const auto& item : *items) {
      // An item that does not parse is acknowledged with the rest: no later attempt can send it.
      if (!request.add_events()->ParseFromString(item.payload))
        request.mutable_events()->RemoveLast();
      sent.push_back(item.id);
    }
    if (request.events_size() > 0) {
      if (auto s = transport_.ReportEvents(request); !s.ok()) return s;
    }
    if (auto s = state_.Ack(sent); !s.ok()) return s;
  }
}

std::chrono::seconds Updater::Backoff(uint32_t attempts) const {
  std::chrono::seconds wait = retry_.base_backoff;
  for (uint32_t i = 1; i < attempts && wait < retry_.max_backoff; ++i) wait *= 2;
  return std::min(wait, retry_.max_backoff);
}

void Updater::ReportUntrusted(const v1::DesiredModel& desired, const absl::Status& why) {
  const v1::ModelVersion& metadata = desired.metadata();
  Report(metadata.model_name(), metadata.version(), v1::UPDATE_EVENT_KIND_FAILED,
         FailureReasonOf(why, v1::FAILURE_REASON_SIGNATURE), std::string(why.message()));
  (void)FlushEvents();  // queued: sent at the next check-in when the server is unreachable now
}

absl::Status Updater::Fail(const ReleaseId& release, const absl::Status& error,
                           v1::FailureReason fallback) {
  auto log = Logger("update");
  const v1::FailureReason reason = FailureReasonOf(error, fallback);
  const std::string message(error.message());
  const int64_t now = ToUnixSeconds(clock_.Now());
  StateStore::UpdateFailure failure{
      release.model, release.version, release.sha256, release.metadata_version, 0,
      now,           reason,          message};
  if (auto before = state_.LoadFailure(release.model);
      before.ok() && *before && release.Names(**before)) {
    failure.attempts = (*before)->attempts;
  }
  // A dropped connection or an expired manifest (the server signs a fresh one at every check-in,
  // and the device clock may have been wrong) is retried at the next check-in without counting.
  // Anything else could fail the same way again: it waits, and stops after a bounded count.
  if (reason == v1::FAILURE_REASON_DOWNLOAD || reason == v1::FAILURE_REASON_EXPIRED) {
    failure.detail = absl::StrCat(message, " (retried at the next check-in)");
  } else if (++failure.attempts >= retry_.max_attempts) {
    failure.detail =
        absl::StrCat(message, " (attempt ", failure.attempts, " of ", retry_.max_attempts,
                     "; no more attempts until another release or a redeployment)");
  } else {
    const std::chrono::seconds wait = Backoff(failure.attempts);
    failure.next_attempt_unix = now + wait.count();
    failure.detail = absl::StrCat(message, " (attempt ", failure.attempts, " of ",
                                  retry_.max_attempts, "; next in ", wait.count(), "s)");
  }
  log->warn("update refused model={} version={} reason={} detail={}", release.model,
            release.version, v1::FailureReason_Name(reason), failure.detail);
  Report(release.model, release.version, v1::UPDATE_EVENT_KIND_FAILED, reason, failure.detail);
  if (auto s = state_.SaveFailure(failure); !s.ok()) {
    // Without the record the release is tried again at the next check-in, unbounded.
    log->error("cannot record failure of model={}: {}", release.model, s.ToString());
  }
  // Events that cannot be sent now stay queued and go with the next check-in.
  if (auto s = FlushEvents(); !s.ok()) log->debug("events queued: {}", s.ToString());
  return VerificationError(
      reason, absl::StrCat("update ", release.model, " to ", release.version, ": ", message));
}

absl::Status Updater::Due(const v1::DesiredModel& desired) {
  const ReleaseId release = ReleaseIdOf(desired);
  auto failure = state_.LoadFailure(release.model);
  if (!failure.ok()) return failure.status();
  if (!*failure || !release.Names(**failure)) {
    return absl::OkStatus();
  }
  const StateStore::UpdateFailure& f = **failure;
  const std::string what = absl::StrCat(
      "model ", release.model, " version ", release.version, " failed ", f.attempts, " time(s) (",
      v1::FailureReason_Name(static_cast<v1::FailureReason>(f.reason_code)), ": ", f.detail, ")");
  if (f.attempts >= retry_.max_attempts) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, "; not retried until another release or a redeployment"));
  }
  const int64_t now = ToUnixSeconds(clock_.Now());
  if (now < f.next_attempt_unix) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, "; next attempt in ", f.next_attempt_unix - now, "s"));
  }
  return absl::OkStatus();
}

void Updater::Succeeded(const ReleaseId& release) {
  if (auto s = state_.ClearFailure(release.model); !s.ok()) {
    // The inventory keeps listing the old failure until the next success clears it.
    Logger("update")->warn("cannot clear failure of model={}: {}", release.model, s.ToString());
  }
  Report(release.model, release.version, v1::UPDATE_EVENT_KIND_ACTIVATED);
  // Events that cannot be sent now stay queued and go with the next check-in.
  if (auto s = FlushEvents(); !s.ok()) Logger("update")->debug("events queued: {}", s.ToString());
}

absl::StatusOr<std::optional<v1::ReferenceProfile>> SignedReference(
    const v1::DesiredModel& desired, const v1::ReleaseManifest& manifest) {
  // Without a signed digest, any profile in the answer is ignored: the default binning applies.
  if (manifest.reference_profile_sha256().empty()) return std::nullopt;
  if (!desired.has_reference()) {
    return VerificationError(v1::FAILURE_REASON_DIGEST,
                             "the signed manifest names a reference profile the answer lacks");
  }
  if (telemetry::ProfileSha256(desired.reference()) != manifest.reference_profile_sha256() ||
      desired.reference().profile_sha256() != manifest.reference_profile_sha256()) {
    return VerificationError(
        v1::FAILURE_REASON_DIGEST,
        "reference profile's SHA-256 differs from the signed manifest's (tampered)");
  }
  if (auto b = BinningProfile::FromReference(desired.reference()); !b.ok()) {
    return VerificationError(v1::FAILURE_REASON_DIGEST, std::string(b.status().message()));
  }
  return desired.reference();
}

absl::Status Updater::Apply(const v1::DesiredModel& desired) {
  const v1::ModelVersion& metadata = desired.metadata();
  const std::string& model = metadata.model_name();
  const ReleaseId release = ReleaseIdOf(desired);

  // One update of a model at a time: the next waits until the probation ends.
  if (auto watch = watches_.find(model); watch != watches_.end()) {
    const ReleaseId& watched = watch->second.release;
    if (watched.version == metadata.version() && watched.sha256 == metadata.artifact_sha256()) {
      return absl::OkStatus();
    }
    return absl::UnavailableError(absl::StrCat("model ", model, " version ", watched.version,
                                               " is on probation; ", metadata.version(),
                                               " waits until it ends"));
  }
  auto current = state_.Current(model);
  if (!current.ok()) return current.status();
  if (*current && (*current)->version == metadata.version() &&
      (*current)->artifact_sha256 == metadata.artifact_sha256()) {
    // A failure recorded for a release the server no longer offers is stale.
    if (auto failure = state_.LoadFailure(model); failure.ok() && *failure) {
      if (auto s = state_.ClearFailure(model); !s.ok()) {
        Logger("update")->warn("cannot clear failure of model={}: {}", model, s.ToString());
      }
    }
    return absl::OkStatus();
  }
  if (auto due = Due(desired); !due.ok()) return due;

  Job job{release};
  job.desired = &desired;
  auto refuse = [&](const absl::Status& error, v1::FailureReason fallback) {
    StepFailed(job, error, fallback);
    return Drive(job, UpdateState::kIdle, UpdateEvent::kStepFailed);
  };
  auto min_metadata_version = state_.HighestMetadataVersion(model);
  if (!min_metadata_version.ok()) return min_metadata_version.status();
  auto manifest =
      manifest::Verify(desired.manifest(), keys_, manifest_clock_->Now(), *min_metadata_version);
  if (!manifest.ok()) return refuse(manifest.status(), v1::FAILURE_REASON_SIGNATURE);
  // The signed manifest is the truth; the unsigned metadata must describe the same release.
  if (manifest->model_name() != model || manifest->version() != metadata.version() ||
      manifest->artifact_sha256() != metadata.artifact_sha256()) {
    return refuse(
        absl::InvalidArgumentError("signed manifest names a different model, version or artifact"),
        v1::FAILURE_REASON_SIGNATURE);
  }
  // Names become directories under the state dir: the server's naming rule, checked again here.
  absl::Status name_ok = ValidateModelName(manifest->model_name());
  if (name_ok.ok()) name_ok = ValidateVersion(manifest->version());
  if (!name_ok.ok()) return refuse(name_ok, v1::FAILURE_REASON_NAME);
  auto reference = SignedReference(desired, *manifest);
  if (!reference.ok()) return refuse(reference.status(), v1::FAILURE_REASON_DIGEST);
  job.reference = *std::move(reference);
  job.manifest = *manifest;
  job.part_path =
      (fs::path(state_dir_) / "downloads" / (crypto::ToHex(manifest->artifact_sha256()) + ".part"))
          .string();

  // An operator's rollback to the version kept as previous needs no download.
  UpdateEvent offer = UpdateEvent::kOffered;
  auto previous = state_.Previous(model);
  if (!previous.ok()) return previous.status();
  if (*previous && (*previous)->version == manifest->version() &&
      (*previous)->artifact_sha256 == manifest->artifact_sha256()) {
    // Never act on unverified bytes: the kept file is checked like a download.
    auto digest = crypto::Sha256File((*previous)->path);
    if (digest.ok() && *digest == manifest->artifact_sha256()) {
      job.kept = **previous;
      offer = UpdateEvent::kKeptCopyOffered;
    } else {
      Logger("update")->warn("kept copy of model={} version={} is damaged, downloading it", model,
                             manifest->version());
    }
  }
  absl::Status result = Drive(job, UpdateState::kIdle, offer);
  // A window of zero (or a version that fails at once) is decided now.
  if (result.ok() && watches_.count(model) > 0) Judge(model);
  return result;
}

UpdateEvent Updater::Fetch(Job& job) {
  const v1::ReleaseManifest& manifest = *job.manifest;
  const v1::DesiredModel& desired = *job.desired;
  const std::string& model = manifest.model_name();
  auto current = state_.Current(model);
  if (!current.ok()) return StepFailed(job, current.status(), v1::FAILURE_REASON_DOWNLOAD);
  bool via_patch = false;
  // Resuming a full download beats starting a patch over.
  std::error_code no_part;
  if (desired.has_patch() && *current && !fs::exists(job.part_path, no_part) &&
      (*current)->artifact_sha256 == desired.patch().from_artifact_sha256()) {
    absl::Status patched = ApplyPatch(manifest, desired.patch(), (*current)->path, job.part_path);
    via_patch = patched.ok();
    if (!via_patch) {
      // A patch is an optimisation: any problem with it falls back to the full artifact.
      Logger("update")->warn("patch rejected model={} version={}, falling back to full: {}", model,
                             manifest.version(), patched.ToString());
      Report(model, manifest.version(), v1::UPDATE_EVENT_KIND_PATCH_REJECTED,
             v1::FAILURE_REASON_PATCH, std::string(patched.message()));
    }
  }
  if (!via_patch) {
    std::error_code ignored;
    if (!fs::exists(job.part_path, ignored)) {
      Report(model, manifest.version(), v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED);
    }
    if (auto s =
            Download(manifest.artifact_sha256(), manifest.artifact_size_bytes(), job.part_path);
        !s.ok()) {
      return StepFailed(job, s, v1::FAILURE_REASON_DOWNLOAD);
    }
  }
  Report(model, manifest.version(), v1::UPDATE_EVENT_KIND_DOWNLOADED);
  return UpdateEvent::kFetched;
}

UpdateEvent Updater::Stage(Job& job) {
  // The kept file stays where it is: a failed activation must leave it for the next attempt.
  if (job.kept) {
    job.staged_path = job.kept->path;
    return UpdateEvent::kStaged;
  }
  const v1::ReleaseManifest& manifest = *job.manifest;
  const std::string& model = manifest.model_name();
  // Each version gets its own directory, so the serving version is never overwritten.
  auto staging_dir = StagingDir(state_, fs::path(state_dir_) / "models" / model, model,
                                manifest.version(), crypto::ToHex(manifest.artifact_sha256()));
  if (!staging_dir.ok()) return StepFailed(job, staging_dir.status(), v1::FAILURE_REASON_LOAD);
  const fs::path version_dir = *staging_dir;
  const fs::path staged_path = version_dir / "model.onnx";
  std::error_code ec;
  fs::create_directories(version_dir, ec);
  job.staged_here = true;
  job.staged_path = staged_path.string();
  fs::rename(job.part_path, staged_path, ec);
  if (ec) {
    return StepFailed(job, absl::InternalError(absl::StrCat("stage: ", ec.message())),
                      v1::FAILURE_REASON_LOAD);
  }
  FsyncPath(version_dir);
  return UpdateEvent::kStaged;
}

UpdateEvent Updater::Activate(Job& job) {
  const v1::ReleaseManifest& manifest = *job.manifest;
  const v1::SignedManifest& signed_manifest = job.desired->manifest();
  // The installed version's record keeps its verified reference profile: after a restart its
  // telemetry is binned as before (BinningFor).
  v1::ModelVersion metadata = job.desired->metadata();
  metadata.clear_reference_profile();
  if (job.reference) *metadata.mutable_reference_profile() = *job.reference;
  auto engine = engines_.Load(job.staged_path);
  if (!engine.ok()) {
    return StepFailed(
        job, VerificationError(v1::FAILURE_REASON_LOAD, std::string(engine.status().message())),
        v1::FAILURE_REASON_LOAD);
  }
  if (auto s = WarmUp(**engine, metadata); !s.ok()) {
    return StepFailed(job, VerificationError(v1::FAILURE_REASON_WARMUP, std::string(s.message())),
                      v1::FAILURE_REASON_WARMUP);
  }
  StateStore::InstalledVersion installed{manifest.model_name(),
                                         manifest.version(),
                                         manifest.artifact_sha256(),
                                         job.staged_path,
                                         signed_manifest.canonical_manifest(),
                                         signed_manifest.signature(),
                                         manifest.metadata_version(),
                                         metadata.SerializeAsString()};
  // Committing a version name that is already installed replaces its row, so its files
  // (staged elsewhere, see StagingDir) must go too once the new one serves.
  std::vector<std::string> replaced_paths;
  for (auto slot :
       {state_.Current(manifest.model_name()), state_.Previous(manifest.model_name())}) {
    if (slot.ok() && *slot && (*slot)->version == manifest.version() &&
        (*slot)->path != job.staged_path) {
      replaced_paths.push_back((*slot)->path);
    }
  }
  // Commit durably first, then flip: a crash in between restarts in Activating, which rolls
  // the committed version back.
  auto dropped = state_.CommitVersion(installed);
  if (!dropped.ok()) return StepFailed(job, dropped.status(), v1::FAILURE_REASON_LOAD);
  if (auto s = state_.RaiseMetadataVersion(manifest.model_name(), manifest.metadata_version());
      !s.ok()) {
    return StepFailed(job, s, v1::FAILURE_REASON_LOAD);
  }
  job.monitor = std::make_shared<VersionMonitor>();
  job.replaced = host_.Swap(std::make_shared<ServingModel>(
      ServingModel{manifest.model_name(), manifest.version(), metadata,
                   std::shared_ptr<InferenceEngine>(*std::move(engine)), job.monitor}));
  if (*dropped) replaced_paths.push_back((*dropped)->path);
  for (const std::string& path : replaced_paths) RemoveVersionFiles(path);
  Logger("update")->info("serving model={} version={} metadata_version={}", manifest.model_name(),
                         manifest.version(), manifest.metadata_version());
  return job.kept ? UpdateEvent::kSwappedKnownGood : UpdateEvent::kSwapped;
}

void Updater::StartWatch(Job& job) {
  const ReleaseId& r = job.release;
  Watch watch{r, job.replaced, job.monitor, std::nullopt, clock_.Now(), job.restarts};
  if (job.replaced) {
    if (auto monitor = std::dynamic_pointer_cast<VersionMonitor>(job.replaced->observer)) {
      watch.baseline = monitor->Read();
    }
  }
  watches_[r.model] = std::move(watch);
  Logger("update")->info(
      "probation started model={} version={} window_seconds={} min_requests={} "
      "latency_ratio={}",
      r.model, r.version, probation_.window.count(), probation_.min_requests,
      probation_.latency_ratio);
  Report(r.model, r.version, v1::UPDATE_EVENT_KIND_PROBATION_STARTED);
  // Events that cannot be sent now stay queued and go with the next check-in.
  if (auto s = FlushEvents(); !s.ok()) Logger("update")->debug("events queued: {}", s.ToString());
}

std::optional<UpdateEvent> Updater::ResumeProbation(Job& job) {
  const ReleaseId& r = job.release;
  auto current = state_.Current(r.model);
  if (!current.ok()) return StepFailed(job, current.status(), v1::FAILURE_REASON_LOAD);
  if (!*current || (*current)->version != r.version || (*current)->artifact_sha256 != r.sha256) {
    return StepFailed(job,
                      absl::InternalError("the version on probation is no longer the current one"),
                      v1::FAILURE_REASON_LOAD);
  }
  if (absl::Status s = Serve(**current); !s.ok()) {
    StepFailed(job, s, v1::FAILURE_REASON_LOAD);
    job.kept = **current;  // what Repair drops
    return FailureReasonOf(s) == v1::FAILURE_REASON_DIGEST ? UpdateEvent::kStoredCopyDamaged
                                                           : UpdateEvent::kStepFailed;
  }
  auto serving = host_.Get(r.model);
  // Nothing in memory to swap back to, and no recent p95 to compare with: the restored
  // previous version and the error and non-finite checks still protect the device.
  watches_[r.model] = Watch{r,
                            nullptr,
                            std::dynamic_pointer_cast<VersionMonitor>(serving->observer),
                            std::nullopt,
                            clock_.Now(),
                            job.restarts};
  Logger("update")->warn(
      "model={} version={} was on probation when the agent stopped; watching it again (restart "
      "{} of {})",
      r.model, r.version, job.restarts, probation_.crash_limit);
  job.result = absl::OkStatus();
  return std::nullopt;
}

void Updater::Judge(const std::string& model) {
  auto it = watches_.find(model);
  if (it == watches_.end()) return;
  const Watch& w = it->second;
  const VersionMonitor::Snapshot now = w.monitor->Read();
  ProbationEvidence evidence;
  evidence.elapsed = clock_.Now() - w.started;
  evidence.answers = now.answers;
  evidence.errors = now.errors;
  evidence.non_finite = now.non_finite;
  evidence.p95_seconds = now.p95_seconds;
  evidence.latency_samples = now.latency_samples;
  if (w.baseline) {
    evidence.previous_p95_seconds = w.baseline->p95_seconds;
    evidence.previous_latency_samples = w.baseline->latency_samples;
  }
  const ProbationResult result = JudgeProbation(probation_, evidence);
  if (result.verdict == ProbationVerdict::kWatching) return;
  Job job{w.release};
  job.restarts = w.restarts;
  job.replaced = w.previous;
  auto log = Logger("update");
  UpdateEvent event = UpdateEvent::kProbationPassed;
  if (result.verdict == ProbationVerdict::kPassed) {
    log->info("model={} version={} passed probation: {}", model, job.release.version,
              result.detail);
  } else {
    log->warn("model={} version={} failed probation: {}", model, job.release.version,
              result.detail);
    job.error = VerificationError(v1::FAILURE_REASON_PROBATION_FAILED, result.detail);
    job.fallback = v1::FAILURE_REASON_PROBATION_FAILED;
    event = UpdateEvent::kProbationFailed;
  }
  if (absl::Status s = Drive(job, UpdateState::kProbation, event); !s.ok()) {
    log->debug("probation of model={} ended: {}", model, s.ToString());
  }
}

void Updater::CheckProbation() {
  std::vector<std::string> models;
  for (const auto& [model, watch] : watches_) models.push_back(model);
  for (const std::string& model : models) Judge(model);
}

void Updater::RollBack(Job& job) {
  auto log = Logger("update");
  const ReleaseId& r = job.release;
  std::shared_ptr<const ServingModel> previous_in_memory = job.replaced;
  if (auto watch = watches_.find(r.model); watch != watches_.end()) {
    if (!previous_in_memory) previous_in_memory = watch->second.previous;
    watches_.erase(watch);
  }
  // Durably first: what a restart serves is the current version in the state.
  auto current = state_.Current(r.model);
  if (!current.ok()) {
    log->error("cannot read current version of model={}: {}", r.model, current.status().ToString());
  } else if (*current && (*current)->version == r.version &&
             (*current)->artifact_sha256 == r.sha256) {
    auto previous = state_.Previous(r.model);
    const bool has_previous = previous.ok() && previous->has_value();
    auto dropped = has_previous ? state_.RestorePrevious(r.model) : state_.DropCurrent(r.model);
    if (!dropped.ok()) {
      log->error("cannot roll back model={} version={} in the state: {}", r.model, r.version,
                 dropped.status().ToString());
    } else if (*dropped && (!has_previous || (*dropped)->path != (**previous).path)) {
      RemoveVersionFiles((*dropped)->path);
    }
  }
  // Then what serves follows the state: the restored version from memory when it is there,
  // else from its kept copy on disk (no download), else nothing.
  auto restored = state_.Current(r.model);
  std::shared_ptr<const ServingModel> serving = host_.Get(r.model);
  auto serves = [](const std::shared_ptr<const ServingModel>& m,
                   const StateStore::InstalledVersion& v) {
    return m && m->version == v.version && m->metadata.artifact_sha256() == v.artifact_sha256;
  };
  std::string now_serving = "nothing";
  if (restored.ok() && *restored) {
    now_serving = (*restored)->version;
    if (serves(serving, **restored)) {
      // Already (the activation failed before its swap, or at start-up before serving).
    } else if (serves(previous_in_memory, **restored)) {
      host_.Swap(previous_in_memory);
    } else if (absl::Status s = Serve(**restored); !s.ok()) {
      log->error("cannot serve model={} version={} after the rollback: {}", r.model,
                 (*restored)->version, s.ToString());
      host_.Remove(r.model);
      now_serving = "nothing";
    }
  } else if (serving && serving->version == r.version) {
    host_.Remove(r.model);
  }
  // A staged file that the state does not name (the activation failed before its commit).
  if (job.staged_here && !job.staged_path.empty()) {
    bool named = false;
    for (auto slot : {state_.Current(r.model), state_.Previous(r.model)}) {
      if (slot.ok() && *slot && (*slot)->path == job.staged_path) named = true;
    }
    if (!named) RemoveVersionFiles(job.staged_path);
  }
  log->warn("rolled back model={} version={}; {} serves", r.model, r.version, now_serving);
}

absl::Status Updater::Download(const std::string& sha256, uint64_t expected,
                               const std::string& path) {
  const fs::path part_path(path);
  std::error_code ec;
  fs::create_directories(part_path.parent_path(), ec);
  uint64_t offset = fs::exists(part_path, ec) ? fs::file_size(part_path, ec) : 0;
  if (offset > expected) {
    fs::remove(part_path, ec);
    offset = 0;
  }
  auto hash = HashPrefix(part_path, offset);
  if (!hash.ok()) {
    // An unreadable partial download is not resumed: the next attempt starts from zero.
    fs::remove(part_path, ec);
    return hash.status();
  }

  if (offset < expected) {
    if (absl::Status room = CheckRoom(part_path.parent_path(), expected - offset); !room.ok()) {
      // Nothing half-stored is kept: the partial bytes would only take more of a full disk.
      fs::remove(part_path, ec);
      return room;
    }
    Logger("update")->info("downloading sha256={} from_offset={} size_bytes={}",
                           crypto::ToHex(sha256).substr(0, 12), offset, expected);
    std::ofstream out(part_path, std::ios::binary | std::ios::app);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
    uint64_t received = offset;
    int write_errno = 0;
    absl::Status fetched =
        transport_.FetchArtifact(sha256, offset, [&](std::string_view data) -> absl::Status {
          // Never accept more than the signed length: a hostile server cannot fill the disk.
          if (received + data.size() > expected) {
            return VerificationError(
                v1::FAILURE_REASON_OVERSIZE,
                absl::StrCat("download is larger than the expected ", expected, " bytes"));
          }
          out.write(data.data(), static_cast<std::streamsize>(data.size()));
          if (!out.flush()) {
            write_errno = errno;
            return absl::InternalError(
                absl::StrCat("write to partial download failed: ", std::strerror(write_errno)));
          }
          hash->Update(data);
          received += data.size();
          return absl::OkStatus();
        });
    out.flush();
    out.close();
    if (FailureReasonOf(fetched) == v1::FAILURE_REASON_OVERSIZE) {
      fs::remove(part_path, ec);
      return fetched;
    }
    if (write_errno == ENOSPC || write_errno == EDQUOT) {
      // The disk filled up under the download (something else wrote to it meanwhile).
      fs::remove(part_path, ec);
      return NoSpace(absl::StrCat("the disk filled up at byte ", received, " of ", expected,
                                  " of the download into ", part_path.parent_path().string()));
    }
    if (!fetched.ok()) {
      return VerificationError(
          v1::FAILURE_REASON_DOWNLOAD,
          absl::StrCat("download interrupted at byte ", received, ": ", fetched.message()));
    }
    if (received != expected) {
      fs::remove(part_path, ec);
      return VerificationError(
          v1::FAILURE_REASON_LENGTH,
          absl::StrCat("download has ", received, " bytes, expected ", expected));
    }
    FsyncPath(part_path);
  }
  if (hash->Finish() != sha256) {
    // The damage may lie in bytes kept from an earlier attempt: the next one starts from zero.
    fs::remove(part_path, ec);
    return VerificationError(v1::FAILURE_REASON_DIGEST, "SHA-256 does not match the signed digest");
  }
  return absl::OkStatus();
}

absl::Status Updater::ApplyPatch(const v1::ReleaseManifest& manifest, const v1::PatchOffer& patch,
                                 const std::string& held_path, const std::string& part_path) {
  if (patch.patch_sha256().size() != 32 || patch.patch_size_bytes() == 0 ||
      patch.patch_size_bytes() >= manifest.artifact_size_bytes()) {
    return absl::InvalidArgumentError("patch offer is malformed or not smaller than the artifact");
  }
  const fs::path patch_path =
      fs::path(state_dir_) / "downloads" / (crypto::ToHex(patch.patch_sha256()) + ".patch");
  std::error_code ec;
  absl::Status s = Download(patch.patch_sha256(), patch.patch_size_bytes(), patch_path.string());
  if (s.ok()) {
    delta::ApplyOptions options;
    options.expected_new_size_bytes = manifest.artifact_size_bytes();
    options.max_new_size_bytes = manifest.artifact_size_bytes();
    s = delta::ApplyFiles(held_path, patch_path.string(), part_path, options);
  }
  // The patched output is verified like a download: it must be the signed artifact, exactly.
  if (s.ok()) {
    auto digest = crypto::Sha256File(part_path);
    if (!digest.ok()) {
      s = digest.status();
    } else if (*digest != manifest.artifact_sha256()) {
      s = VerificationError(v1::FAILURE_REASON_DIGEST,
                            "patched artifact does not match the signed SHA-256");
    }
  }
  // The patch goes whatever happened, even after an interrupted download: the full download
  // follows at once, and a later attempt resumes that one (its .part exists) rather than the
  // patch, so a partial patch would never be used again and would stay on the device's disk.
  fs::remove(patch_path, ec);
  if (!s.ok()) fs::remove(part_path, ec);
  if (s.ok()) {
    Logger("update")->info(
        "patched model={} version={} codec={} patch_size_bytes={} artifact_size_bytes={}",
        manifest.model_name(), manifest.version(), patch.codec(), patch.patch_size_bytes(),
        manifest.artifact_size_bytes());
  }
  return s;
}

std::vector<v1::InstalledModel> Updater::InstalledModels() {
  std::vector<v1::InstalledModel> out;
  for (const auto& serving : host_.All()) {
    v1::InstalledModel m;
    m.set_model_name(serving->model_name);
    m.set_version(serving->version);
    m.set_state(v1::MODEL_STATE_SERVING);
    m.set_artifact_sha256(serving->metadata.artifact_sha256());
    out.push_back(std::move(m));
    if (auto previous = state_.Previous(serving->model_name); previous.ok() && *previous) {
      v1::InstalledModel p;
      p.set_model_name((*previous)->model_name);
      p.set_version((*previous)->version);
      p.set_state(v1::MODEL_STATE_PREVIOUS);
      p.set_artifact_sha256((*previous)->artifact_sha256);
      out.push_back(std::move(p));
    }
  }
  auto failures = state_.AllFailures();
  if (!failures.ok()) {
    Logger("update")->warn("cannot list failures: {}", failures.status().ToString());
    return out;
  }
  for (const StateStore::UpdateFailure& f : *failures) {
    v1::InstalledModel m;
    m.set_model_name(f.model_name);
    m.set_version(f.version);
    m.set_state(v1::MODEL_STATE_FAILED);
    m.set_artifact_sha256(f.artifact_sha256);
    // Within the server's limit, or every check-in carrying it would be refused.
    m.set_detail(
        FitText(absl::StrCat(v1::FailureReason_Name(static_cast<v1::FailureReason>(f.reason_code)),
                             ": ", f.detail),
                RequestLimits::kDetailBytes));
    m.set_failed_attempts(f.attempts);
    if (f.attempts < retry_.max_attempts)
      m.mutable_next_attempt_at()->set_seconds(f.next_attempt_unix);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace edgefleet::agent
