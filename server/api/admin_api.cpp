#include "server/api/admin_api.h"

#include <google/protobuf/util/json_util.h>

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/core/labels.h"
#include "common/core/logging.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "server/api/request_limits.h"
#include "server/enrollment/enroller.h"

namespace edgefleet::server {
namespace {

constexpr uint64_t kDefaultTokenTtlSeconds = 24 * 3600;
constexpr uint64_t kMaxTokenTtlSeconds = 366 * 24 * 3600;
constexpr uint32_t kMaxTokenUses = 1'000'000;

absl::Status ValidateName(const std::string& what, std::string_view value, bool allow_upper,
                          std::string_view extra) {
  if (value.empty() || value.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be 1 to 63 characters"));
  }
  for (char c : value) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || (allow_upper && c >= 'A' && c <= 'Z') ||
              extra.find(c) != std::string_view::npos;
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", std::string(value), "' has a character outside ",
                       allow_upper ? "[A-Za-z0-9._+-]" : "[a-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

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

}  // namespace

absl::Status ValidateModelName(std::string_view name) {
  return ValidateName("model_name", name, false, "");
}
absl::Status ValidateVersion(std::string_view version) {
  return ValidateName("version", version, true, "+");
}

AdminApi::AdminApi(AdminRepos repos, ArtifactStore& artifacts, const Clock& clock,
                   ServerMetrics& metrics, AdminApiOptions options, PatchService* patches)
    : repos_(repos),
      artifacts_(artifacts),
      clock_(clock),
      metrics_(metrics),
      options_(options),
      patches_(patches) {}

void AdminApi::PrecomputePatches(const std::string& model_name, const std::string& to_sha256,
                                 const std::vector<v1::Device>& devices) {
  if (patches_ == nullptr) return;
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
    if (auto s = patches_->Request(sha, to_sha256); !s.ok()) {
      Logger("admin")->warn("cannot queue patch for model={}: {}", model_name, s.ToString());
    }
  }
}

void AdminApi::Audit(const Principal& who, const std::string& action,
                     const google::protobuf::Message& detail) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(detail, &json);
  if (auto s = repos_.audit.Record(who.name, action, json); !s.ok()) {
    Logger("admin")->warn("audit action={} actor={} failed: {}", action, who.name, s.ToString());
  }
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
  auto token = repos_.tokens.Create(id, crypto::Sha256Bytes(secret), max_uses,
                                    ToUnixSeconds(clock_.Now()) + static_cast<int64_t>(ttl), labels,
                                    request.description());
  if (!token.ok()) return token.status();
  token->set_token(secret);
  v1::EnrollmentToken audited = *token;
  audited.clear_token();
  Audit(who, "enrollment_token.create", audited);
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
  auto device = repos_.devices.UpdateLabels(request.device_id(), set, remove);
  if (device.ok()) Audit(who, "device.label", request);
  return device;
}

absl::StatusOr<v1::Device> AdminApi::DecommissionDevice(
    const Principal& who, const v1::DecommissionDeviceRequest& request) {
  if (request.device_id().empty()) return absl::InvalidArgumentError("device_id is required");
  auto device = repos_.devices.Decommission(request.device_id());
  if (device.ok()) Audit(who, "device.decommission", request);
  return device;
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
  if (auto s = ValidateTensorSpecs("input", metadata.inputs()); !s.ok()) return s;
  if (auto s = ValidateTensorSpecs("output", metadata.outputs()); !s.ok()) return s;
  if (auto s = ValidateLabelMap(metadata.labels()); !s.ok()) return s;
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
  auto artifact = upload->writer_->Commit();
  if (!artifact.ok()) return artifact.status();
  if (artifact->size_bytes == 0) return absl::InvalidArgumentError("the model file is empty");
  if (!metadata.expected_sha256().empty() && metadata.expected_sha256() != artifact->sha256) {
    return absl::InvalidArgumentError(
        absl::StrCat("uploaded artifact has SHA-256 ", crypto::ToHex(artifact->sha256), " but ",
                     crypto::ToHex(metadata.expected_sha256()), " was expected"));
  }
  auto metadata_version = repos_.models.NextMetadataVersion();
  if (!metadata_version.ok()) return metadata_version.status();

  v1::ModelVersion version;
  version.set_model_name(metadata.model_name());
  version.set_version(metadata.version());
  version.set_format(v1::MODEL_FORMAT_ONNX);
  version.set_artifact_sha256(artifact->sha256);
  version.set_size_bytes(artifact->size_bytes);
  *version.mutable_inputs() = metadata.inputs();
  *version.mutable_outputs() = metadata.outputs();
  *version.mutable_labels() = metadata.labels();
  version.set_metadata_version(*metadata_version);
  version.mutable_created_at()->set_seconds(ToUnixSeconds(clock_.Now()));
  // Devices get manifests signed at check-in (fresh expiry); none is stored at push time.
  if (auto s = repos_.models.InsertVersion(version, "", "", ""); !s.ok()) return s;
  metrics_.models_pushed.Add({}).Increment();
  Audit(upload->who_, "model.push", version);
  Logger("admin")->info("model pushed model={} version={} sha256={} size_bytes={}",
                        version.model_name(), version.version(), crypto::ToHex(artifact->sha256),
                        artifact->size_bytes);
  if (patches_ != nullptr) {
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
  for (auto& m : models->items) *response.add_models() = std::move(m);
  response.set_next_page_token(NextPageToken("ListModels", models->next_after));
  return response;
}

absl::StatusOr<v1::Model> AdminApi::GetModel(const v1::GetModelRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  return repos_.models.GetModel(request.model_name());
}

absl::StatusOr<v1::Deployment> AdminApi::CreateDeployment(
    const Principal& who, const v1::CreateDeploymentRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  auto selector = ParseLabelSelector(request.label_selector());
  if (!selector.ok()) return selector.status();
  auto deployment =
      repos_.deployments.Create(request.model_name(), request.version(), FormatLabels(*selector),
                                *selector, ToUnixSeconds(clock_.Now()));
  if (!deployment.ok()) return deployment;
  Audit(who, "deployment.create", request);
  if (patches_ != nullptr) {
    auto target = repos_.models.GetVersion(request.model_name(), request.version());
    std::vector<v1::Device> devices;
    for (const auto& t : deployment->targets()) {
      if (auto device = repos_.devices.Get(t.device_id()); device.ok()) devices.push_back(*device);
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
  return repos_.deployments.Get(request.deployment_id());
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

}  // namespace edgefleet::server
