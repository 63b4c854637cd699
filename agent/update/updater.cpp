#include "agent/update/updater.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/core/limits.h"
#include "common/core/logging.h"
#include "common/core/names.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta_files.h"
#include "common/manifest/manifest.h"
#include "common/manifest/verification.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;
using Phase = StateStore::UpdatePhase;

constexpr char kEventKind[] = "update_event";
constexpr size_t kHashBufferBytes = 1 << 16;

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
                 const Clock& clock, std::string state_dir, RetryPolicy retry)
    : Updater(state, host, engines, transport, nullptr, &keys, clock, std::move(state_dir), retry) {
}

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, const crypto::Verifier& release_root,
                 const Clock& clock, std::string state_dir, RetryPolicy retry)
    // The caller owns `release_root` and outlives this updater: borrow it without owning.
    : Updater(state, host, engines, transport,
              std::make_unique<manifest::ReleaseKeyring>(
                  std::shared_ptr<const crypto::Verifier>(std::shared_ptr<void>(), &release_root)),
              nullptr, clock, std::move(state_dir), retry) {}

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, std::unique_ptr<manifest::ReleaseKeyring> own_keys,
                 const manifest::ReleaseKeyring* keys, const Clock& clock, std::string state_dir,
                 RetryPolicy retry)
    : state_(state),
      host_(host),
      engines_(engines),
      transport_(transport),
      own_keys_(std::move(own_keys)),
      keys_(keys != nullptr ? *keys : *own_keys_),
      clock_(clock),
      state_dir_(std::move(state_dir)),
      retry_(retry) {}

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
      v.model_name, v.version, metadata, std::shared_ptr<InferenceEngine>(*std::move(engine))}));
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
  auto installed = state_.AllCurrent();
  if (!installed.ok()) return installed.status();
  absl::Status first_error;
  for (const auto& v : *installed) {
    absl::Status s = Serve(v);
    if (!s.ok()) {
      Logger("update")->error("cannot restore model={} version={}: {}", v.model_name, v.version,
                              s.ToString());
      first_error.Update(s);
      Repair(v, s);
      continue;
    }
    Logger("update")->info("restored model={} version={} from disk", v.model_name, v.version);
    // An update interrupted before its commit is simply retried at the next check-in. Nothing
    // acts on the record, so one left behind by a failed clear does no harm.
    if (auto cleared = state_.ClearUpdate(v.model_name); !cleared.ok()) {
      Logger("update")->warn("cannot clear update record: {}", cleared.ToString());
    }
  }
  return first_error;
}

absl::Status Updater::Save(const v1::ReleaseManifest& manifest, Phase phase) {
  return state_.SaveUpdate(
      {manifest.model_name(), manifest.version(), manifest.artifact_sha256(), phase, ""});
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
  if (auto s = state_.Enqueue(kEventKind, event.SerializeAsString()); !s.ok()) {
    Logger("update")->warn("cannot queue update event: {}", s.ToString());
  }
}

absl::Status Updater::FlushEvents() {
  while (true) {
    auto items = state_.Peek(100);
    if (!items.ok()) return items.status();
    if (items->empty()) return absl::OkStatus();
    v1::ReportEventRequest request;
    for (const auto& item : *items) {
      if (item.kind == kEventKind) request.add_events()->ParseFromString(item.payload);
    }
    if (request.events_size() > 0) {
      if (auto s = transport_.ReportEvents(request); !s.ok()) return s;
    }
    if (auto s = state_.Ack(items->back().id); !s.ok()) return s;
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
  if (auto s = state_.SaveUpdate(
          {release.model, release.version, release.sha256, Phase::kFailed, failure.detail});
      !s.ok()) {
    log->warn("cannot save update phase: {}", s.ToString());
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

absl::Status Updater::ActivateKeptCopy(const ReleaseId& release,
                                       const v1::ReleaseManifest& manifest,
                                       const v1::DesiredModel& desired) {
  auto previous = state_.Previous(manifest.model_name());
  if (!previous.ok()) return previous.status();
  if (!*previous || (*previous)->version != manifest.version() ||
      (*previous)->artifact_sha256 != manifest.artifact_sha256()) {
    return absl::NotFoundError("no kept copy of this release");
  }
  // Never act on unverified bytes: the kept file is checked like a download.
  auto digest = crypto::Sha256File((*previous)->path);
  if (!digest.ok() || *digest != manifest.artifact_sha256()) {
    Logger("update")->warn("kept copy of model={} version={} is damaged, downloading it",
                           manifest.model_name(), manifest.version());
    return absl::NotFoundError("kept copy no longer verifies");
  }
  if (auto s = Save(manifest, Phase::kVerify); !s.ok()) return s;
  Report(release.model, release.version, v1::UPDATE_EVENT_KIND_VERIFIED);
  // The kept file stays where it is: a failed activation must leave it for the next attempt.
  if (auto s = Activate(manifest, desired.manifest(), desired.metadata(), (*previous)->path);
      !s.ok()) {
    return Fail(release, s, v1::FAILURE_REASON_LOAD);
  }
  Logger("update")->info("model={} version={} served from the kept copy, no download",
                         manifest.model_name(), manifest.version());
  Succeeded(release);
  return absl::OkStatus();
}

absl::Status Updater::Apply(const v1::DesiredModel& desired) {
  const v1::ModelVersion& metadata = desired.metadata();
  const std::string& model = metadata.model_name();
  const ReleaseId release = ReleaseIdOf(desired);

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

  auto min_metadata_version = state_.HighestMetadataVersion(model);
  if (!min_metadata_version.ok()) return min_metadata_version.status();
  auto manifest = manifest::Verify(desired.manifest(), keys_, clock_.Now(), *min_metadata_version);
  if (!manifest.ok()) return Fail(release, manifest.status(), v1::FAILURE_REASON_SIGNATURE);
  // The signed manifest is the truth; the unsigned metadata must describe the same release.
  if (manifest->model_name() != model || manifest->version() != metadata.version() ||
      manifest->artifact_sha256() != metadata.artifact_sha256()) {
    return Fail(
        release,
        absl::InvalidArgumentError("signed manifest names a different model, version or artifact"),
        v1::FAILURE_REASON_SIGNATURE);
  }
  // Names become directories under the state dir: the server's naming rule, checked again here.
  absl::Status name_ok = ValidateModelName(manifest->model_name());
  if (name_ok.ok()) name_ok = ValidateVersion(manifest->version());
  if (!name_ok.ok()) {
    return Fail(release, name_ok, v1::FAILURE_REASON_NAME);
  }

  // An operator's rollback to the version kept as previous needs no download.
  if (absl::Status kept = ActivateKeptCopy(release, *manifest, desired); !absl::IsNotFound(kept)) {
    return kept;
  }

  const std::string hex = crypto::ToHex(manifest->artifact_sha256());
  const fs::path part_path = fs::path(state_dir_) / "downloads" / (hex + ".part");
  if (auto s = Save(*manifest, Phase::kFetch); !s.ok()) return s;
  bool via_patch = false;
  // Resuming a full download beats starting a patch over.
  std::error_code no_part;
  if (desired.has_patch() && *current && !fs::exists(part_path, no_part) &&
      (*current)->artifact_sha256 == desired.patch().from_artifact_sha256()) {
    absl::Status patched =
        ApplyPatch(*manifest, desired.patch(), (*current)->path, part_path.string());
    via_patch = patched.ok();
    if (!via_patch) {
      // A patch is an optimisation: any problem with it falls back to the full artifact.
      Logger("update")->warn("patch rejected model={} version={}, falling back to full: {}", model,
                             manifest->version(), patched.ToString());
      Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_PATCH_REJECTED,
             v1::FAILURE_REASON_PATCH, std::string(patched.message()));
    }
  }
  if (!via_patch) {
    std::error_code ignored;
    if (!fs::exists(part_path, ignored)) {
      Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED);
    }
    if (auto s = Download(manifest->artifact_sha256(), manifest->artifact_size_bytes(),
                          part_path.string());
        !s.ok()) {
      return Fail(release, s, v1::FAILURE_REASON_DOWNLOAD);
    }
  }
  Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_DOWNLOADED);
  // A failed save fails the step; the verified .part stays and the next attempt reuses it.
  if (auto s = Save(*manifest, Phase::kVerify); !s.ok()) return s;
  Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_VERIFIED);

  // Stage: each version gets its own directory, so the serving version is never overwritten.
  auto staging_dir =
      StagingDir(state_, fs::path(state_dir_) / "models" / model, model, manifest->version(), hex);
  if (!staging_dir.ok()) return Fail(release, staging_dir.status(), v1::FAILURE_REASON_LOAD);
  const fs::path version_dir = *staging_dir;
  const fs::path staged_path = version_dir / "model.onnx";
  std::error_code ec;
  fs::create_directories(version_dir, ec);
  fs::rename(part_path, staged_path, ec);
  if (ec) {
    return Fail(release, absl::InternalError(absl::StrCat("stage: ", ec.message())),
                v1::FAILURE_REASON_LOAD);
  }
  FsyncPath(version_dir);
  // The staged file is not yet committed: the next attempt downloads and stages it again.
  if (auto s = Save(*manifest, Phase::kStage); !s.ok()) return s;

  if (auto s = Activate(*manifest, desired.manifest(), metadata, staged_path.string()); !s.ok()) {
    fs::remove_all(version_dir, ec);
    return Fail(release, s, v1::FAILURE_REASON_LOAD);
  }
  Succeeded(release);
  return absl::OkStatus();
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
    Logger("update")->info("downloading sha256={} from_offset={} size_bytes={}",
                           crypto::ToHex(sha256).substr(0, 12), offset, expected);
    std::ofstream out(part_path, std::ios::binary | std::ios::app);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
    uint64_t received = offset;
    absl::Status fetched =
        transport_.FetchArtifact(sha256, offset, [&](std::string_view data) -> absl::Status {
          // Never accept more than the signed length: a hostile server cannot fill the disk.
          if (received + data.size() > expected) {
            return VerificationError(
                v1::FAILURE_REASON_OVERSIZE,
                absl::StrCat("download is larger than the expected ", expected, " bytes"));
          }
          out.write(data.data(), static_cast<std::streamsize>(data.size()));
          if (!out) return absl::InternalError("write to partial download failed");
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

absl::Status Updater::Activate(const v1::ReleaseManifest& manifest,
                               const v1::SignedManifest& signed_manifest,
                               const v1::ModelVersion& metadata, const std::string& staged_path) {
  auto engine = engines_.Load(staged_path);
  if (!engine.ok())
    return VerificationError(v1::FAILURE_REASON_LOAD, std::string(engine.status().message()));
  if (auto s = WarmUp(**engine, metadata); !s.ok()) {
    return VerificationError(v1::FAILURE_REASON_WARMUP, std::string(s.message()));
  }
  if (auto s = Save(manifest, Phase::kActivate); !s.ok()) return s;

  StateStore::InstalledVersion installed{manifest.model_name(),
                                         manifest.version(),
                                         manifest.artifact_sha256(),
                                         staged_path,
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
        (*slot)->path != staged_path) {
      replaced_paths.push_back((*slot)->path);
    }
  }
  // Commit durably first, then flip: a crash in between restarts on the committed version.
  auto dropped = state_.CommitVersion(installed);
  if (!dropped.ok()) return dropped.status();
  if (auto s = state_.RaiseMetadataVersion(manifest.model_name(), manifest.metadata_version());
      !s.ok()) {
    return s;
  }
  host_.Swap(std::make_shared<ServingModel>(
      ServingModel{manifest.model_name(), manifest.version(), metadata,
                   std::shared_ptr<InferenceEngine>(*std::move(engine))}));
  // The version is committed and serving: a record left behind by a failed clear does no harm,
  // nothing acts on it.
  if (auto s = state_.ClearUpdate(manifest.model_name()); !s.ok()) {
    Logger("update")->warn("cannot clear update record: {}", s.ToString());
  }
  if (*dropped) replaced_paths.push_back((*dropped)->path);
  for (const std::string& path : replaced_paths) RemoveVersionFiles(path);
  Logger("update")->info("serving model={} version={} metadata_version={}", manifest.model_name(),
                         manifest.version(), manifest.metadata_version());
  return absl::OkStatus();
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
