#include "agent/update/updater.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/core/limits.h"
#include "common/core/logging.h"
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

bool IsSafePathComponent(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '+';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Updater::Updater(StateStore& state, ModelHost& host, EngineFactory& engines,
                 DeviceTransport& transport, const crypto::Verifier& release_root,
                 const Clock& clock, std::string state_dir)
    : state_(state),
      host_(host),
      engines_(engines),
      transport_(transport),
      release_root_(release_root),
      clock_(clock),
      state_dir_(std::move(state_dir)) {}

absl::Status Updater::RestoreFromDisk() {
  auto installed = state_.AllCurrent();
  if (!installed.ok()) return installed.status();
  absl::Status first_error;
  for (const auto& v : *installed) {
    v1::ModelVersion metadata;
    metadata.ParseFromString(v.metadata_proto);
    // The file on disk must still be the signed artifact: a damaged or altered file is not served.
    auto digest = crypto::Sha256File(v.path);
    absl::Status s =
        !digest.ok() ? digest.status()
        : *digest != v.artifact_sha256
            ? VerificationError(v1::FAILURE_REASON_DIGEST,
                                absl::StrCat(v.path, " no longer matches its signed SHA-256"))
            : absl::OkStatus();
    auto engine =
        s.ok() ? engines_.Load(v.path) : absl::StatusOr<std::unique_ptr<InferenceEngine>>(s);
    if (s.ok()) s = engine.ok() ? WarmUp(**engine, metadata) : engine.status();
    if (!s.ok()) {
      Logger("update")->error("cannot restore model={} version={}: {}", v.model_name, v.version,
                              s.ToString());
      first_error.Update(s);
      continue;
    }
    host_.Swap(std::make_shared<ServingModel>(ServingModel{
        v.model_name, v.version, metadata, std::shared_ptr<InferenceEngine>(*std::move(engine))}));
    Logger("update")->info("restored model={} version={} from disk", v.model_name, v.version);
    // An update interrupted before its commit is simply retried at the next check-in.
    (void)state_.ClearUpdate(v.model_name);
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

absl::Status Updater::Fail(const std::string& model, const std::string& version,
                           const std::string& sha256, const absl::Status& error,
                           v1::FailureReason fallback) {
  v1::FailureReason reason = FailureReasonOf(error, fallback);
  std::string detail(error.message());
  Logger("update")->warn("update refused model={} version={} reason={} detail={}", model, version,
                         v1::FailureReason_Name(reason), detail);
  Report(model, version, v1::UPDATE_EVENT_KIND_FAILED, reason, detail);
  // A transient download problem is retried, and so is an expired manifest: the server signs a
  // fresh one at every check-in (and the device clock may have been wrong). Anything else would
  // fail the same way again.
  if (reason != v1::FAILURE_REASON_DOWNLOAD && reason != v1::FAILURE_REASON_EXPIRED) {
    (void)state_.MarkFailed(model, version, sha256, reason, detail);
    (void)state_.SaveUpdate({model, version, sha256, Phase::kFailed, detail});
  }
  {
    std::lock_guard lock(failures_mu_);
    v1::InstalledModel& failure = last_failure_[model];
    failure.set_model_name(model);
    failure.set_version(version);
    failure.set_state(v1::MODEL_STATE_FAILED);
    failure.set_artifact_sha256(sha256);
    failure.set_detail(FitText(absl::StrCat(v1::FailureReason_Name(reason), ": ", detail),
                               RequestLimits::kDetailBytes));
  }
  (void)FlushEvents();
  return VerificationError(reason, absl::StrCat("update ", model, " to ", version, ": ", detail));
}

absl::Status Updater::Apply(const v1::DesiredModel& desired) {
  const v1::ModelVersion& metadata = desired.metadata();
  const std::string& model = metadata.model_name();

  auto current = state_.Current(model);
  if (!current.ok()) return current.status();
  if (*current && (*current)->version == metadata.version() &&
      (*current)->artifact_sha256 == metadata.artifact_sha256()) {
    return absl::OkStatus();
  }
  auto failed = state_.IsFailed(model, metadata.version(), metadata.artifact_sha256());
  if (!failed.ok()) return failed.status();
  if (*failed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", model, " version ", metadata.version(), " failed before; not retried"));
  }

  auto min_metadata_version = state_.HighestMetadataVersion(model);
  if (!min_metadata_version.ok()) return min_metadata_version.status();
  auto manifest =
      manifest::Verify(desired.manifest(), release_root_, clock_.Now(), *min_metadata_version);
  if (!manifest.ok()) {
    return Fail(model, metadata.version(), metadata.artifact_sha256(), manifest.status(),
                v1::FAILURE_REASON_SIGNATURE);
  }
  // The signed manifest is the truth; the unsigned metadata must describe the same release.
  if (manifest->model_name() != model || manifest->version() != metadata.version()) {
    return Fail(model, metadata.version(), metadata.artifact_sha256(),
                absl::InvalidArgumentError("signed manifest names a different model or version"),
                v1::FAILURE_REASON_SIGNATURE);
  }
  // Names become directories under the state dir: refuse anything that is not a plain name.
  if (!IsSafePathComponent(manifest->model_name()) || !IsSafePathComponent(manifest->version())) {
    return Fail(model, metadata.version(), metadata.artifact_sha256(),
                absl::InvalidArgumentError("model name or version is not a safe file name"),
                v1::FAILURE_REASON_SIGNATURE);
  }

  const std::string hex = crypto::ToHex(manifest->artifact_sha256());
  const fs::path part_path = fs::path(state_dir_) / "downloads" / (hex + ".part");
  (void)Save(*manifest, Phase::kFetch);
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
      return Fail(model, manifest->version(), manifest->artifact_sha256(), s,
                  v1::FAILURE_REASON_DOWNLOAD);
    }
  }
  Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_DOWNLOADED);
  (void)Save(*manifest, Phase::kVerify);
  Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_VERIFIED);

  // Stage: each version gets its own directory, so the serving version is never overwritten.
  auto staging_dir =
      StagingDir(state_, fs::path(state_dir_) / "models" / model, model, manifest->version(), hex);
  if (!staging_dir.ok()) {
    return Fail(model, manifest->version(), manifest->artifact_sha256(), staging_dir.status(),
                v1::FAILURE_REASON_LOAD);
  }
  const fs::path version_dir = *staging_dir;
  const fs::path staged_path = version_dir / "model.onnx";
  std::error_code ec;
  fs::create_directories(version_dir, ec);
  fs::rename(part_path, staged_path, ec);
  if (ec) {
    return Fail(model, manifest->version(), manifest->artifact_sha256(),
                absl::InternalError(absl::StrCat("stage: ", ec.message())),
                v1::FAILURE_REASON_LOAD);
  }
  FsyncPath(version_dir);
  (void)Save(*manifest, Phase::kStage);

  if (auto s = Activate(*manifest, desired.manifest(), metadata, staged_path.string()); !s.ok()) {
    fs::remove_all(version_dir, ec);
    return Fail(model, manifest->version(), manifest->artifact_sha256(), s,
                v1::FAILURE_REASON_LOAD);
  }
  {
    std::lock_guard lock(failures_mu_);
    last_failure_.erase(model);
  }
  Report(model, manifest->version(), v1::UPDATE_EVENT_KIND_ACTIVATED);
  (void)FlushEvents();
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
  if (!hash.ok()) return hash.status();

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
  (void)Save(manifest, Phase::kActivate);

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
  (void)state_.ClearUpdate(manifest.model_name());
  if (*dropped) replaced_paths.push_back((*dropped)->path);
  for (const std::string& path : replaced_paths) {
    std::error_code ec;
    fs::remove_all(fs::path(path).parent_path(), ec);
  }
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
  std::lock_guard lock(failures_mu_);
  for (const auto& [name, failure] : last_failure_) out.push_back(failure);
  return out;
}

}  // namespace edgefleet::agent
