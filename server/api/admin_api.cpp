#include "server/api/admin_api.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/capture/capture_spec.h"
#include "common/core/labels.h"
#include "common/core/logging.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta.h"
#include "common/delta/onnx_signature.h"
#include "common/telemetry/reference_profile.h"
#include "server/api/request_limits.h"
#include "server/enrollment/enroller.h"
#include "server/rollout/wave_plan.h"

namespace edgefleet::server {
namespace {

constexpr uint64_t kDefaultTokenTtlSeconds = 24 * 3600;
constexpr uint64_t kMaxTokenTtlSeconds = 366 * 24 * 3600;
constexpr uint32_t kMaxTokenUses = 1'000'000;
constexpr uint64_t kDefaultApiTokenTtlSeconds = 90ull * 24 * 3600;
// The token the server installs from its admin_token setting (server/app/server.cpp).
constexpr char kBuiltInAdminToken[] = "admin";

absl::Status ValidateLabelMap(const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : labels) {
    if (auto parsed = ParseLabelSelector(absl::StrCat(k, "=", v));
        !parsed.ok() || parsed->size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("invalid label ", k, "=", v));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTensorSpecs(const std::string& what,
                                 const google::protobuf::RepeatedPtrField<v1::TensorSpec>& specs) {
  for (const auto& spec : specs) {
    if (spec.name().empty()) return absl::InvalidArgumentError(absl::StrCat(what, " needs a name"));
    for (int64_t d : spec.shape()) {
      if (d == 0 || d < -1) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " '", spec.name(), "' has dimension ", d, " (use -1 for dynamic)"));
      }
    }
  }
  return absl::OkStatus();
}

// The ONNX graph's inputs and outputs, from the staged file (mapped, not read into memory).
absl::StatusOr<delta::OnnxSignature> ReadModelSignature(const std::string& path) {
  auto mapped = delta::MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  return delta::ParseOnnxSignature((*mapped)->data());
}

absl::StatusOr<v1::ApiToken> ToApiToken(const ApiTokenRecord& record) {
  auto role = ParseRoleName(record.role);
  if (!role.ok()) return role.status();
  v1::ApiToken token;
  token.set_name(record.name);
  token.set_role(*role);
  token.mutable_created_at()->set_seconds(record.created_at_unix);
  if (record.expires_at_unix) token.mutable_expires_at()->set_seconds(*record.expires_at_unix);
  if (record.revoked_at_unix) token.mutable_revoked_at()->set_seconds(*record.revoked_at_unix);
  token.set_created_by(record.created_by);
  token.set_description(record.description);
  return token;
}

std::string Names(const std::vector<delta::OnnxTensorInfo>& tensors) {
  std::vector<std::string> names;
  for (const auto& t : tensors) names.push_back(absl::StrCat("'", t.name, "'"));
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

// A declared tensor list (when not empty) must name exactly the graph's tensors, with shapes
// that agree wherever both state a dimension.
absl::Status CheckTensors(const char* what,
                          const google::protobuf::RepeatedPtrField<v1::TensorSpec>& declared,
                          const std::vector<delta::OnnxTensorInfo>& graph) {
  if (declared.empty()) return absl::OkStatus();
  std::set<std::string> declared_names;
  for (const v1::TensorSpec& spec : declared) {
    declared_names.insert(spec.name());
    auto it = std::find_if(graph.begin(), graph.end(),
                           [&](const delta::OnnxTensorInfo& t) { return t.name == spec.name(); });
    if (it == graph.end()) {
      return absl::InvalidArgumentError(absl::StrCat("declared ", what, " '", spec.name(),
                                                     "' is not in the ONNX graph, whose ", what,
                                                     "s are ", Names(graph)));
    }
    if (!it->has_shape || spec.shape().empty()) continue;
    bool same = static_cast<size_t>(spec.shape_size()) == it->dims.size();
    for (size_t i = 0; same && i < it->dims.size(); ++i) {
      const int64_t want = spec.shape(static_cast<int>(i));
      same = want == -1 || it->dims[i] == -1 || want == it->dims[i];
    }
    if (!same) {
      std::vector<std::string> dims;
      for (int64_t d : it->dims) dims.push_back(d == -1 ? "?" : absl::StrCat(d));
      return absl::InvalidArgumentError(absl::StrCat(
          "declared ", what, " '", spec.name(), "' has shape ", absl::StrJoin(spec.shape(), "x"),
          " but the ONNX graph says ", absl::StrJoin(dims, "x")));
    }
  }
  for (const delta::OnnxTensorInfo& t : graph) {
    if (!declared_names.contains(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ONNX graph's ", what, " '", t.name, "' is not declared"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDeclaredTensors(const v1::PushModelMetadata& metadata,
                                  const delta::OnnxSignature& signature) {
  if (auto s = CheckTensors("input", metadata.inputs(), signature.inputs); !s.ok()) return s;
  return CheckTensors("output", metadata.outputs(), signature.outputs);
}

// An uploaded profile as the server stores it: UPLOADED, valid for `feature_count` features, and
// when the client stated its digest, the one the server computes.
absl::Status CheckUploadedReference(const v1::ReferenceProfile& profile, size_t feature_count) {
  if (profile.source() != v1::REFERENCE_SOURCE_UPLOADED) {
    return absl::InvalidArgumentError("reference profile: a pushed profile's source is UPLOADED");
  }
  if (profile.windows() != 0) {
    return absl::InvalidArgumentError("reference profile: an uploaded profile has no windows");
  }
  if (auto s = edgefleet::telemetry::ValidateProfile(profile, feature_count); !s.ok()) return s;
  if (!profile.profile_sha256().empty() &&
      profile.profile_sha256() != edgefleet::telemetry::ProfileSha256(profile)) {
    return absl::InvalidArgumentError(
        "reference profile: profile_sha256 is not the SHA-256 of its canonical encoding");
  }
  return absl::OkStatus();
}

v1::ReferenceSummary SummaryOf(const v1::ReferenceProfile& profile) {
  v1::ReferenceSummary s;
  s.set_source(profile.source());
  s.set_samples(profile.samples());
  s.set_windows(profile.windows());
  s.set_profile_sha256(profile.profile_sha256());
  s.set_feature_count(static_cast<uint32_t>(profile.features_size()));
  return s;
}

google::protobuf::RepeatedPtrField<v1::TensorSpec> ToTensorSpecs(
    const std::vector<delta::OnnxTensorInfo>& tensors) {
  google::protobuf::RepeatedPtrField<v1::TensorSpec> specs;
  for (const delta::OnnxTensorInfo& t : tensors) {
    v1::TensorSpec* spec = specs.Add();
    spec->set_name(t.name);
    for (int64_t d : t.dims) spec->add_shape(d);
  }
  return specs;
}

}  // namespace

AdminApi::AdminApi(AdminRepos repos, ArtifactStore& artifacts, const Clock& clock,
                   ServerMetrics& metrics, AdminApiOptions options, AdminServices services)
    : repos_(repos),
      artifacts_(artifacts),
      clock_(clock),
      metrics_(metrics),
      options_(options),
      services_(services) {}

void AdminApi::PrecomputePatches(const std::string& model_name, const std::string& to_sha256,
                                 const std::vector<v1::Device>& devices) {
  if (services_.patches == nullptr) return;
  std::set<std::string> from;
  for (const v1::Device& device : devices) {
    for (const v1::InstalledModel& m : device.inventory().models()) {
      if (m.model_name() == model_name && m.state() == v1::MODEL_STATE_SERVING &&
          m.artifact_sha256().size() == 32 && m.artifact_sha256() != to_sha256) {
        from.insert(m.artifact_sha256());
      }
    }
  }
  for (const std::string& sha : from) {
    if (auto s = services_.patches->Request(sha, to_sha256); !s.ok()) {
      Logger("admin")->warn("cannot queue patch for model={}: {}", EscapeForLog(model_name),
                            EscapeForLog(s.ToString()));
    }
  }
}

absl::Status AdminApi::Audit(Tx& tx, const Principal& who, const std::string& action,
                             const google::protobuf::Message& detail) {
  std::string json;
  if (auto s = google::protobuf::util::MessageToJsonString(detail, &json); !s.ok()) {
    return absl::InternalError(absl::StrCat("audit ", action, ": ", s.ToString()));
  }
  return repos_.audit.Record(tx, who.name, action, json);
}

absl::StatusOr<v1::EnrollmentToken> AdminApi::CreateEnrollmentToken(
    const Principal& who, const v1::CreateEnrollmentTokenRequest& request) {
  uint32_t max_uses = request.max_uses() == 0 ? 1 : request.max_uses();
  uint64_t ttl = request.ttl_seconds() == 0 ? kDefaultTokenTtlSeconds : request.ttl_seconds();
  if (max_uses > kMaxTokenUses) {
    return absl::InvalidArgumentError(absl::StrCat("max_uses must be at most ", kMaxTokenUses));
  }
  if (ttl > kMaxTokenTtlSeconds) {
    return absl::InvalidArgumentError("ttl_seconds must be at most one year");
  }
  if (auto s = ValidateLabelMap(request.labels()); !s.ok()) return s;
  std::string id = crypto::ToHex(crypto::RandomBytes(6));
  std::string secret = absl::StrCat("eft_", id, "_", crypto::RandomToken(24));
  Labels labels(request.labels().begin(), request.labels().end());
  const int64_t expires = ToUnixSeconds(clock_.Now()) + static_cast<int64_t>(ttl);
  auto token = repos_.db.Transact(
      "create enrollment token", [&](Tx& tx) -> absl::StatusOr<v1::EnrollmentToken> {
        auto token = repos_.tokens.Create(tx, id, crypto::Sha256Bytes(secret), max_uses, expires,
                                          labels, request.description());
        if (!token.ok()) return token;
        // The audit row gets the token without its secret (set below, after the commit).
        if (auto s = Audit(tx, who, "enrollment_token.create", *token); !s.ok()) return s;
        return token;
      });
  if (!token.ok()) return token.status();
  token->set_token(secret);
  return token;
}

absl::StatusOr<v1::ListDevicesResponse> AdminApi::ListDevices(
    const v1::ListDevicesRequest& request) {
  auto selector = ParseLabelSelector(request.label_selector());
  if (!selector.ok()) return selector.status();
  auto page = ReadPageRequest("ListDevices", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto devices = repos_.devices.ListPage(*selector, *page);
  if (!devices.ok()) return devices.status();
  v1::ListDevicesResponse response;
  for (auto& d : devices->items) *response.add_devices() = std::move(d);
  response.set_next_page_token(NextPageToken("ListDevices", devices->next_after));
  return response;
}

absl::StatusOr<v1::Device> AdminApi::GetDevice(const v1::GetDeviceRequest& request) {
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  return repos_.devices.Get(request.device_id());
}

absl::StatusOr<v1::Device> AdminApi::LabelDevice(const Principal& who,
                                                 const v1::LabelDeviceRequest& request) {
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  if (auto s = ValidateLabelMap(request.set_labels()); !s.ok()) return s;
  Labels set(request.set_labels().begin(), request.set_labels().end());
  std::vector<std::string> remove(request.remove_labels().begin(), request.remove_labels().end());
  return repos_.db.Transact("label device", [&](Tx& tx) -> absl::StatusOr<v1::Device> {
    auto device = repos_.devices.UpdateLabels(tx, request.device_id(), set, remove);
    if (!device.ok()) return device;
    if (auto s = Audit(tx, who, "device.label", request); !s.ok()) return s;
    return device;
  });
}

absl::StatusOr<v1::Device> AdminApi::DecommissionDevice(
    const Principal& who, const v1::DecommissionDeviceRequest& request) {
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  return repos_.db.Transact("decommission device", [&](Tx& tx) -> absl::StatusOr<v1::Device> {
    auto device = repos_.devices.Decommission(tx, request.device_id());
    if (!device.ok()) return device;
    if (auto s = Audit(tx, who, "device.decommission", request); !s.ok()) return s;
    return device;
  });
}

absl::StatusOr<v1::RekeyDeviceResponse> AdminApi::RekeyDevice(
    const Principal& who, const v1::RekeyDeviceRequest& request) {
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  constexpr uint64_t kDefaultTtl = 24 * 3600;
  constexpr uint64_t kMaxTtl = 30 * 24 * 3600;
  if (request.ttl_seconds() > kMaxTtl) {
    return absl::InvalidArgumentError(absl::StrCat("ttl_seconds must be at most ", kMaxTtl));
  }
  const int64_t until =
      ToUnixSeconds(clock_.Now()) +
      static_cast<int64_t>(request.ttl_seconds() == 0 ? kDefaultTtl : request.ttl_seconds());
  auto device = repos_.db.Transact("allow device rekey", [&](Tx& tx) -> absl::StatusOr<v1::Device> {
    auto device = repos_.devices.AllowRekey(tx, request.device_id(), until);
    if (!device.ok()) return device;
    if (auto s = Audit(tx, who, "device.rekey", request); !s.ok()) return s;
    return device;
  });
  if (!device.ok()) return device.status();
  v1::RekeyDeviceResponse response;
  *response.mutable_device() = *std::move(device);
  response.mutable_enroll_before()->set_seconds(until);
  return response;
}

absl::Status ModelUpload::Append(std::string_view data) {
  const uint64_t declared = metadata_.expected_size_bytes();
  if (declared != 0 && received_bytes_ + data.size() > declared) {
    return absl::InvalidArgumentError(
        absl::StrCat("the upload has more than the declared ", declared, " bytes"));
  }
  if (absl::Status s = writer_->Append(data); !s.ok()) return s;
  received_bytes_ += data.size();
  return absl::OkStatus();
}

absl::Status ModelUpload::DeclareEnd(uint64_t size_bytes, std::string_view sha256) {
  if (!sha256.empty() && sha256.size() != 32) {
    return absl::InvalidArgumentError("the finish message's sha256 must be 32 bytes");
  }
  if (metadata_.expected_size_bytes() != 0 && metadata_.expected_size_bytes() != size_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the finish message says ", size_bytes,
                                                   " bytes but the metadata declared ",
                                                   metadata_.expected_size_bytes()));
  }
  if (!sha256.empty() && !metadata_.expected_sha256().empty() &&
      metadata_.expected_sha256() != sha256) {
    return absl::InvalidArgumentError(
        "the finish message's SHA-256 differs from the one in the metadata");
  }
  metadata_.set_expected_size_bytes(size_bytes);
  if (!sha256.empty()) metadata_.set_expected_sha256(std::string(sha256));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelUpload>> AdminApi::BeginPush(
    const Principal& who, const v1::PushModelMetadata& metadata) {
  if (auto s = CheckRequestLimits(metadata); !s.ok()) return s;
  if (auto s = ValidateModelName(metadata.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(metadata.version()); !s.ok()) return s;
  if (metadata.format() != v1::MODEL_FORMAT_UNSPECIFIED &&
      metadata.format() != v1::MODEL_FORMAT_ONNX) {
    return absl::InvalidArgumentError("format must be ONNX");
  }
  if (!metadata.expected_sha256().empty() && metadata.expected_sha256().size() != 32) {
    return absl::InvalidArgumentError("expected_sha256 must be 32 bytes");
  }
  if (metadata.expected_size_bytes() > options_.max_artifact_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model file's declared size of ", metadata.expected_size_bytes(),
                     " bytes is over the limit of ", options_.max_artifact_bytes, " bytes"));
  }
  if (auto s = ValidateTensorSpecs("input", metadata.inputs()); !s.ok()) return s;
  if (auto s = ValidateTensorSpecs("output", metadata.outputs()); !s.ok()) return s;
  if (auto s = ValidateLabelMap(metadata.labels()); !s.ok()) return s;
  if (metadata.has_reference()) {
    if (repos_.references == nullptr) {
      return absl::FailedPreconditionError("this server keeps no reference profiles");
    }
    // Its feature count is checked against the model in FinishPush, once the graph is read.
    if (auto s = CheckUploadedReference(metadata.reference(),
                                        static_cast<size_t>(metadata.reference().features_size()));
        !s.ok()) {
      return s;
    }
  }
  // Refuse a duplicate before reading a possibly large upload.
  if (repos_.models.GetVersion(metadata.model_name(), metadata.version()).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("model ", metadata.model_name(), " version ",
                                                 metadata.version(), " already exists"));
  }
  auto writer = artifacts_.BeginUpload(options_.max_artifact_bytes);
  if (!writer.ok()) return writer.status();
  return std::unique_ptr<ModelUpload>(new ModelUpload(who, metadata, *std::move(writer)));
}

absl::StatusOr<v1::ModelVersion> AdminApi::FinishPush(std::unique_ptr<ModelUpload> upload) {
  const v1::PushModelMetadata& metadata = upload->metadata_;
  delta::OnnxSignature signature;
  // Size, digest and content are checked before the bytes become visible in the store.
  auto artifact = upload->writer_->CommitIf([&](const ArtifactInfo& info,
                                                const std::string& staged_path) -> absl::Status {
    if (info.size_bytes == 0) return absl::InvalidArgumentError("the model file is empty");
    if (metadata.expected_size_bytes() != 0 && metadata.expected_size_bytes() != info.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("the upload is incomplete: ", info.size_bytes,
                                                     " of ", metadata.expected_size_bytes(),
                                                     " declared bytes arrived"));
    }
    if (!metadata.expected_sha256().empty() && metadata.expected_sha256() != info.sha256) {
      return absl::InvalidArgumentError(
          absl::StrCat("uploaded artifact has SHA-256 ", crypto::ToHex(info.sha256), " but ",
                       crypto::ToHex(metadata.expected_sha256()), " was expected"));
    }
    auto parsed = ReadModelSignature(staged_path);
    if (!parsed.ok()) return parsed.status();
    signature = *std::move(parsed);
    if (auto s = CheckDeclaredTensors(metadata, signature); !s.ok()) return s;
    if (!metadata.has_reference()) return absl::OkStatus();
    v1::ModelVersion described;
    *described.mutable_inputs() =
        metadata.inputs().empty() ? ToTensorSpecs(signature.inputs) : metadata.inputs();
    return CheckUploadedReference(metadata.reference(),
                                  edgefleet::telemetry::FeatureCountOf(described));
  });
  if (!artifact.ok()) return artifact.status();
  v1::ModelVersion version;
  version.set_model_name(metadata.model_name());
  version.set_version(metadata.version());
  version.set_format(v1::MODEL_FORMAT_ONNX);
  version.set_artifact_sha256(artifact->sha256);
  version.set_size_bytes(artifact->size_bytes);
  // Tensors not declared are described as the graph states them.
  *version.mutable_inputs() =
      metadata.inputs().empty() ? ToTensorSpecs(signature.inputs) : metadata.inputs();
  *version.mutable_outputs() =
      metadata.outputs().empty() ? ToTensorSpecs(signature.outputs) : metadata.outputs();
  *version.mutable_labels() = metadata.labels();
  version.mutable_created_at()->set_seconds(ToUnixSeconds(clock_.Now()));
  // The server's own digest of the profile, whatever the client said it was.
  std::optional<v1::ReferenceProfile> reference;
  if (metadata.has_reference()) {
    reference = metadata.reference();
    reference->set_profile_sha256(edgefleet::telemetry::ProfileSha256(*reference));
  }
  absl::Status registered = repos_.db.Transact("register model version", [&](Tx& tx) {
    auto metadata_version = repos_.models.NextMetadataVersion(tx);
    if (!metadata_version.ok()) return metadata_version.status();
    version.set_metadata_version(*metadata_version);
    // Devices get manifests signed at check-in (fresh expiry); none is stored at push time.
    if (auto s = repos_.models.InsertVersion(tx, version, "", "", ""); !s.ok()) return s;
    if (reference) {
      auto stored =
          repos_.references->Insert(tx, version.model_name(), version.version(), *reference);
      if (!stored.ok()) return stored.status();
    }
    return Audit(tx, upload->who_, "model.push", version);
  });
  if (!registered.ok()) return registered;
  if (reference) {
    *version.mutable_reference() = SummaryOf(*reference);
  } else if (repos_.references != nullptr) {
    version.mutable_reference()->set_detail(
        absl::StrCat("pending, 0 of ", options_.fleet_reference_windows, " windows"));
  }
  metrics_.models_pushed.Add({}).Increment();
  Logger("admin")->info("model pushed model={} version={} sha256={} size_bytes={}",
                        version.model_name(), version.version(), crypto::ToHex(artifact->sha256),
                        artifact->size_bytes);
  if (services_.patches != nullptr) {
    if (auto devices = repos_.devices.List({}); devices.ok()) {
      PrecomputePatches(version.model_name(), version.artifact_sha256(), *devices);
    }
  }
  return version;
}

absl::StatusOr<v1::ModelVersion> AdminApi::PushModel(const Principal& who,
                                                     const v1::PushModelMetadata& metadata,
                                                     const ChunkSource& chunks) {
  auto upload = BeginPush(who, metadata);
  if (!upload.ok()) return upload.status();
  while (true) {
    auto chunk = chunks();
    if (!chunk.ok()) return chunk.status();
    if (!chunk->has_value()) break;
    if (auto s = (*upload)->Append(**chunk); !s.ok()) return s;
  }
  return FinishPush(*std::move(upload));
}

absl::StatusOr<v1::ListModelsResponse> AdminApi::ListModels(const v1::ListModelsRequest& request) {
  auto page = ReadPageRequest("ListModels", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto models = repos_.models.ListModelsPage(*page);
  if (!models.ok()) return models.status();
  v1::ListModelsResponse response;
  for (auto& m : models->items) {
    if (auto s = AddReferenceSummaries(m); !s.ok()) return s;
    *response.add_models() = std::move(m);
  }
  response.set_next_page_token(NextPageToken("ListModels", models->next_after));
  return response;
}

absl::StatusOr<v1::Model> AdminApi::GetModel(const v1::GetModelRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  auto model = repos_.models.GetModel(request.model_name());
  if (!model.ok()) return model;
  if (auto s = AddReferenceSummaries(*model); !s.ok()) return s;
  return model;
}

absl::Status AdminApi::AddReferenceSummaries(v1::Model& model) {
  if (repos_.references == nullptr) return absl::OkStatus();
  const uint64_t needed = options_.fleet_reference_windows;
  return repos_.db.Transact("read reference summaries", [&](Tx& tx) -> absl::Status {
    auto summaries = repos_.references->Summaries(tx, model.name());
    if (!summaries.ok()) return summaries.status();
    for (v1::ModelVersion& v : *model.mutable_versions()) {
      v.clear_reference();
      if (auto it = summaries->find(v.version()); it != summaries->end()) {
        *v.mutable_reference() = it->second;
        continue;
      }
      auto seen = repos_.references->CountWindows(tx, model.name(), v.version(), needed);
      if (!seen.ok()) return seen.status();
      v.mutable_reference()->set_detail(
          absl::StrCat("pending, ", *seen, " of ", needed, " windows"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::ReferenceProfile> AdminApi::GetReferenceProfile(
    const v1::GetReferenceProfileRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  if (repos_.references == nullptr) {
    return absl::FailedPreconditionError("this server keeps no reference profiles");
  }
  auto version = repos_.models.GetVersion(request.model_name(), request.version());
  if (!version.ok()) return version.status();
  auto profile = repos_.db.Transact(
      "read reference profile", [&](Tx& tx) -> absl::StatusOr<std::optional<v1::ReferenceProfile>> {
        return repos_.references->Get(tx, request.model_name(), request.version());
      });
  if (!profile.ok()) return profile.status();
  if (!profile->has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "model ", request.model_name(), " version ", request.version(),
        " has no reference profile yet: none was uploaded and the fleet reference is pending"));
  }
  return **std::move(profile);
}

absl::StatusOr<v1::Deployment> AdminApi::CreateDeployment(
    const Principal& who, const v1::CreateDeploymentRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  auto selector = ParseLabelSelector(request.label_selector());
  if (!selector.ok()) return selector.status();
  if (auto s = ::edgefleet::capture::ValidateCaptureSpec(request.capture()); !s.ok()) return s;
  auto deployment =
      repos_.db.Transact("create deployment", [&](Tx& tx) -> absl::StatusOr<v1::Deployment> {
        auto deployment = repos_.deployments.Create(
            tx, request.model_name(), request.version(), FormatLabels(*selector), *selector,
            ToUnixSeconds(clock_.Now()), request.has_capture() ? &request.capture() : nullptr);
        if (!deployment.ok()) return deployment;
        if (auto s = Audit(tx, who, "deployment.create", request); !s.ok()) return s;
        return deployment;
      });
  if (!deployment.ok()) return deployment;
  if (services_.patches != nullptr) {
    auto target = repos_.models.GetVersion(request.model_name(), request.version());
    // The deployment targets every active device its selector matches (its answer carries
    // only counts): patches go from what those devices serve now.
    auto matching = repos_.devices.List(*selector);
    std::vector<v1::Device> devices;
    if (matching.ok()) {
      for (v1::Device& device : *matching) {
        if (device.status() == v1::DEVICE_STATUS_ACTIVE) devices.push_back(std::move(device));
      }
    }
    if (target.ok())
      PrecomputePatches(request.model_name(), target->meta.artifact_sha256(), devices);
  }
  return deployment;
}

absl::StatusOr<v1::Deployment> AdminApi::GetDeployment(const v1::GetDeploymentRequest& request) {
  int64_t id;
  if (!absl::SimpleAtoi(request.deployment_id(), &id) || id <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("deployment_id '", request.deployment_id(), "' is not a positive number"));
  }
  auto targets = ReadPageRequest("GetDeployment", request.target_page_size(),
                                 request.target_page_token(), "target_");
  if (!targets.ok()) return targets.status();
  auto page = repos_.deployments.Get(request.deployment_id(), *targets);
  if (!page.ok()) return page.status();
  page->deployment.set_next_target_page_token(
      NextPageToken("GetDeployment", page->next_target_after));
  return std::move(page->deployment);
}

absl::StatusOr<v1::ListDeploymentsResponse> AdminApi::ListDeployments(
    const v1::ListDeploymentsRequest& request) {
  auto page = ReadPageRequest("ListDeployments", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto deployments = repos_.deployments.ListPage(*page);
  if (!deployments.ok()) return deployments.status();
  v1::ListDeploymentsResponse response;
  for (auto& d : deployments->items) *response.add_deployments() = std::move(d);
  response.set_next_page_token(NextPageToken("ListDeployments", deployments->next_after));
  return response;
}

absl::StatusOr<v1::ApiToken> AdminApi::CreateApiToken(const Principal& who,
                                                      const v1::CreateApiTokenRequest& request) {
  if (auto s = ValidatePlainName("name", request.name()); !s.ok()) return s;
  if (PermissionsOf(request.role()).empty()) {  // unspecified or unknown
    return absl::InvalidArgumentError(
        "role must be ROLE_VIEWER, ROLE_OPERATOR, ROLE_RELEASE_MANAGER or ROLE_ADMIN");
  }
  uint64_t ttl = request.ttl_seconds() == 0 ? kDefaultApiTokenTtlSeconds : request.ttl_seconds();
  if (ttl > kMaxTokenTtlSeconds) {
    return absl::InvalidArgumentError("ttl_seconds must be at most one year");
  }
  std::string secret = absl::StrCat("efa_", crypto::RandomToken(24));
  ApiTokenRecord record;
  record.name = request.name();
  record.role = std::string(RoleName(request.role()));
  record.expires_at_unix = ToUnixSeconds(clock_.Now()) + static_cast<int64_t>(ttl);
  record.created_by = who.name;
  record.description = request.description();
  auto token = repos_.db.Transact("create API token", [&](Tx& tx) -> absl::StatusOr<v1::ApiToken> {
    auto stored = repos_.api_tokens.Insert(tx, record, crypto::Sha256Bytes(secret));
    if (!stored.ok()) return stored.status();
    auto token = ToApiToken(*stored);
    if (!token.ok()) return token;
    if (auto s = Audit(tx, who, "api_token.create", *token); !s.ok()) return s;
    return token;
  });
  if (!token.ok()) return token.status();
  Logger("admin")->info("API token created name={} role={} by={}", token->name(),
                        RoleName(token->role()), who.name);
  token->set_token(secret);
  return token;
}

absl::StatusOr<v1::ListApiTokensResponse> AdminApi::ListApiTokens(
    const v1::ListApiTokensRequest& request) {
  auto page = ReadPageRequest("ListApiTokens", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto records = repos_.api_tokens.ListPage(*page);
  if (!records.ok()) return records.status();
  v1::ListApiTokensResponse response;
  for (const ApiTokenRecord& record : records->items) {
    auto token = ToApiToken(record);
    if (!token.ok()) return token.status();
    *response.add_tokens() = *std::move(token);
  }
  response.set_next_page_token(NextPageToken("ListApiTokens", records->next_after));
  return response;
}

absl::StatusOr<v1::ApiToken> AdminApi::RevokeApiToken(const Principal& who,
                                                      const v1::RevokeApiTokenRequest& request) {
  if (request.name().empty()) return absl::InvalidArgumentError("name is required");
  if (request.name() == kBuiltInAdminToken) {
    return absl::FailedPreconditionError(
        "the built-in admin token comes from the server's admin_token setting; change it there");
  }
  if (request.name() == who.name) {
    return absl::FailedPreconditionError(
        absl::StrCat("API token '", who.name,
                     "' is the one making this call; revoke it with another admin token"));
  }
  auto token = repos_.db.Transact("revoke API token", [&](Tx& tx) -> absl::StatusOr<v1::ApiToken> {
    auto record = repos_.api_tokens.Revoke(tx, request.name(), ToUnixSeconds(clock_.Now()));
    if (!record.ok()) return record.status();
    auto token = ToApiToken(*record);
    if (!token.ok()) return token;
    if (auto s = Audit(tx, who, "api_token.revoke", request); !s.ok()) return s;
    return token;
  });
  if (!token.ok()) return token.status();
  Logger("admin")->info("API token revoked name={} by={}", request.name(), who.name);
  return token;
}

absl::StatusOr<v1::ListEnrollmentTokensResponse> AdminApi::ListEnrollmentTokens(
    const v1::ListEnrollmentTokensRequest& request) {
  auto page = ReadPageRequest("ListEnrollmentTokens", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto tokens = repos_.tokens.ListPage(*page);
  if (!tokens.ok()) return tokens.status();
  v1::ListEnrollmentTokensResponse response;
  for (auto& t : tokens->items) *response.add_tokens() = std::move(t);
  response.set_next_page_token(NextPageToken("ListEnrollmentTokens", tokens->next_after));
  return response;
}

absl::StatusOr<v1::EnrollmentToken> AdminApi::RevokeEnrollmentToken(
    const Principal& who, const v1::RevokeEnrollmentTokenRequest& request) {
  if (request.token_id().empty()) return absl::InvalidArgumentError("token_id is required");
  auto token = repos_.db.Transact(
      "revoke enrollment token", [&](Tx& tx) -> absl::StatusOr<v1::EnrollmentToken> {
        auto token = repos_.tokens.Revoke(tx, request.token_id(), ToUnixSeconds(clock_.Now()));
        if (!token.ok()) return token;
        if (auto s = Audit(tx, who, "enrollment_token.revoke", request); !s.ok()) return s;
        return token;
      });
  if (!token.ok()) return token.status();
  Logger("admin")->info("enrollment token revoked token_id={} by={}", request.token_id(), who.name);
  return token;
}

// ---- rollouts ----

absl::StatusOr<rollout::RolloutService*> AdminApi::Rollouts() const {
  if (services_.rollouts == nullptr) return absl::UnavailableError("rollouts are not configured");
  return services_.rollouts;
}

absl::StatusOr<v1::Rollout> AdminApi::CreateRollout(const Principal& who,
                                                    const v1::CreateRolloutRequest& request) {
  if (auto definition = rollout::ValidateCreateRollout(request); !definition.ok()) {
    return definition.status();
  }
  auto service = Rollouts();
  if (!service.ok()) return service.status();
  return (*service)->Create(request, who.name);
}

absl::StatusOr<v1::Rollout> AdminApi::GetRollout(const v1::GetRolloutRequest& request) {
  if (request.name().empty()) return absl::InvalidArgumentError("name is required");
  auto service = Rollouts();
  if (!service.ok()) return service.status();
  return (*service)->Get(request.name());
}

absl::StatusOr<v1::ListRolloutsResponse> AdminApi::ListRollouts(
    const v1::ListRolloutsRequest& request) {
  auto page = ReadPageRequest("ListRollouts", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  auto service = Rollouts();
  if (!service.ok()) return service.status();
  auto rollouts = (*service)->List(*page);
  if (!rollouts.ok()) return rollouts.status();
  v1::ListRolloutsResponse response;
  for (v1::Rollout& r : rollouts->items) {
    r.clear_events();  // list answers carry none, whatever the service gave
    *response.add_rollouts() = std::move(r);
  }
  response.set_next_page_token(NextPageToken("ListRollouts", rollouts->next_after));
  return response;
}

absl::StatusOr<v1::Rollout> AdminApi::ActOnRollout(const Principal& who, const std::string& name,
                                                   rollout::OperatorAction action,
                                                   const std::string& reason) {
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  auto service = Rollouts();
  if (!service.ok()) return service.status();
  return (*service)->Act(name, action, reason, who.name);
}

absl::StatusOr<v1::Rollout> AdminApi::PauseRollout(const Principal& who,
                                                   const v1::PauseRolloutRequest& request) {
  return ActOnRollout(who, request.name(), rollout::OperatorAction::kPause, request.reason());
}

absl::StatusOr<v1::Rollout> AdminApi::ResumeRollout(const Principal& who,
                                                    const v1::ResumeRolloutRequest& request) {
  return ActOnRollout(who, request.name(), rollout::OperatorAction::kResume, request.reason());
}

absl::StatusOr<v1::Rollout> AdminApi::PromoteRollout(const Principal& who,
                                                     const v1::PromoteRolloutRequest& request) {
  return ActOnRollout(who, request.name(), rollout::OperatorAction::kPromote, request.reason());
}

absl::StatusOr<v1::Rollout> AdminApi::AbortRollout(const Principal& who,
                                                   const v1::AbortRolloutRequest& request) {
  return ActOnRollout(who, request.name(), rollout::OperatorAction::kAbort, request.reason());
}

absl::StatusOr<v1::Rollout> AdminApi::RollbackRollout(const Principal& who,
                                                      const v1::RollbackRolloutRequest& request) {
  return ActOnRollout(who, request.name(), rollout::OperatorAction::kRollBack, request.reason());
}

absl::StatusOr<v1::ModelStatsResponse> AdminApi::GetModelStats(
    const v1::ModelStatsRequest& request) {
  if (services_.telemetry == nullptr)
    return absl::UnavailableError("this server has no telemetry queries");
  return services_.telemetry->ModelStats(request);
}

absl::StatusOr<v1::DeviceTelemetryResponse> AdminApi::GetDeviceTelemetry(
    const v1::DeviceTelemetryRequest& request) {
  if (services_.telemetry == nullptr)
    return absl::UnavailableError("this server has no telemetry queries");
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  // An unknown device is NotFound rather than an empty list that reads like a silent one.
  if (auto device = repos_.devices.Get(request.device_id()); !device.ok()) return device.status();
  return services_.telemetry->DeviceTelemetry(request);
}

absl::StatusOr<v1::ModelDrift> AdminApi::GetModelDrift(const v1::GetModelDriftRequest& request) {
  if (services_.drift == nullptr) return absl::UnavailableError("drift is not configured");
  return services_.drift->GetDrift(request);
}

absl::StatusOr<v1::DriftThresholds> AdminApi::SetDriftThresholds(
    const Principal& who, const v1::SetDriftThresholdsRequest& request) {
  if (auto s = telemetry::ValidateDriftThresholds(request); !s.ok()) return s;
  if (services_.drift == nullptr) return absl::UnavailableError("drift is not configured");
  return repos_.db.Transact(
      "set drift thresholds", [&](Tx& tx) -> absl::StatusOr<v1::DriftThresholds> {
        auto thresholds = services_.drift->SetThresholds(tx, who.name, request);
        if (!thresholds.ok()) return thresholds;
        if (auto s = Audit(tx, who, "model.drift_thresholds", request); !s.ok()) return s;
        return thresholds;
      });
}

// ---- captures ----

absl::StatusOr<v1::ListCapturesResponse> AdminApi::ListCaptures(
    const v1::ListCapturesRequest& request) {
  if (services_.captures == nullptr) return absl::UnavailableError("capture is not configured");
  return services_.captures->List(request);
}

absl::StatusOr<v1::GetCaptureResponse> AdminApi::GetCapture(const v1::GetCaptureRequest& request) {
  if (services_.captures == nullptr) return absl::UnavailableError("capture is not configured");
  return services_.captures->Get(request);
}

}  // namespace edgefleet::server
