#include "server/api/request_limits.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace edgefleet::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using L = RequestLimits;

const std::map<std::string_view, size_t>& OwnLimits() {
  static const auto* kLimits = new std::map<std::string_view, size_t>{
      {"edgefleet.v1.CreateEnrollmentTokenRequest.description", L::kDescriptionBytes},
      {"edgefleet.v1.ListDevicesRequest.label_selector", L::kSelectorBytes},
      {"edgefleet.v1.CreateDeploymentRequest.label_selector", L::kSelectorBytes},
      {"edgefleet.v1.ListDevicesRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.ListModelsRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.ListDeploymentsRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.ListApiTokensRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.ListEnrollmentTokensRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.GetDeploymentRequest.target_page_token", L::kPageTokenBytes},
      {"edgefleet.v1.PushModelRequest.chunk", L::kUploadChunkBytes},
      {"edgefleet.v1.TensorSpec.shape", L::kTensorDims},
      {"edgefleet.v1.EnrollRequest.csr_pem", L::kCsrBytes},
      {"edgefleet.v1.Inventory.models", L::kInventoryModels},
      {"edgefleet.v1.InstalledModel.detail", L::kDetailBytes},
      {"edgefleet.v1.UpdateEvent.detail", L::kDetailBytes},
      {"edgefleet.v1.ReportEventRequest.events", L::kEventsPerReport},
      {"edgefleet.v1.UploadTelemetryRequest.models", L::kTelemetryEntriesPerUpload},
      {"edgefleet.v1.UploadTelemetryRequest.windows", L::kTelemetryWindowsPerUpload},
      {"edgefleet.v1.TelemetryWindow.features", L::kTelemetryFeatures},
      {"edgefleet.v1.FeatureWindow.bins", L::kTelemetryBins},
      {"edgefleet.v1.ReferenceProfile.features", L::kTelemetryFeatures},
      {"edgefleet.v1.FeatureReference.edges", L::kTelemetryBins - 1},
      {"edgefleet.v1.FeatureReference.bins", L::kTelemetryBins},
      {"edgefleet.v1.LatencySketch.counts", L::kTelemetrySketchBuckets},
      {"edgefleet.v1.CreateRolloutRequest.label_selector", L::kSelectorBytes},
      {"edgefleet.v1.UploadCaptureRequest.captures", L::kCapturesPerUpload},
      {"edgefleet.v1.CaptureUpload.record", L::kCaptureRecordBytes},
      {"edgefleet.v1.ListCapturesRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.CreateRolloutRequest.description", L::kDescriptionBytes},
      {"edgefleet.v1.CreateRolloutRequest.waves", L::kRolloutWaves},
      {"edgefleet.v1.ListRolloutsRequest.page_token", L::kPageTokenBytes},
      {"edgefleet.v1.PauseRolloutRequest.reason", L::kDescriptionBytes},
      {"edgefleet.v1.ResumeRolloutRequest.reason", L::kDescriptionBytes},
      {"edgefleet.v1.PromoteRolloutRequest.reason", L::kDescriptionBytes},
      {"edgefleet.v1.AbortRolloutRequest.reason", L::kDescriptionBytes},
      {"edgefleet.v1.RollbackRolloutRequest.reason", L::kDescriptionBytes},
  };
  return *kLimits;
}

absl::Status TooLarge(const std::string& path, size_t size, size_t limit, const char* unit) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, " has ", size, " ", unit, "; the limit is ", limit));
}

absl::Status CheckMessage(const Message& message, const std::string& prefix);

absl::Status CheckValue(const Message& message, const FieldDescriptor& field, int index,
                        const std::string& path) {
  const auto* reflection = message.GetReflection();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& value =
          index < 0 ? reflection->GetStringReference(message, &field, &scratch)
                    : reflection->GetRepeatedStringReference(message, &field, index, &scratch);
      // A repeated field's limit counts entries; its items get the default size.
      const size_t limit = index < 0                                     ? FieldLimit(field)
                           : field.type() == FieldDescriptor::TYPE_BYTES ? L::kBytesBytes
                                                                         : L::kTextBytes;
      if (value.size() > limit) return TooLarge(path, value.size(), limit, "bytes");
      if (field.type() == FieldDescriptor::TYPE_STRING && value.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(path, " contains a NUL byte"));
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return CheckMessage(index < 0 ? reflection->GetMessage(message, &field)
                                    : reflection->GetRepeatedMessage(message, &field, index),
                          path);
    default:
      return absl::OkStatus();
  }
}

absl::Status CheckMessage(const Message& message, const std::string& prefix) {
  const auto* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string path = absl::StrCat(prefix, prefix.empty() ? "" : ".", field->name());
    if (!field->is_repeated()) {
      if (auto s = CheckValue(message, *field, -1, path); !s.ok()) return s;
      continue;
    }
    const size_t n = static_cast<size_t>(reflection->FieldSize(message, field));
    if (n > FieldLimit(*field)) return TooLarge(path, n, FieldLimit(*field), "entries");
    for (size_t i = 0; i < n; ++i) {
      // Map entries are messages with `key` and `value`: "labels[3].key".
      if (auto s =
              CheckValue(message, *field, static_cast<int>(i), absl::StrCat(path, "[", i, "]"));
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

size_t FieldLimit(const FieldDescriptor& field) {
  if (auto it = OwnLimits().find(field.full_name()); it != OwnLimits().end()) return it->second;
  if (field.is_map()) return L::kMapEntries;
  if (field.is_repeated()) return L::kListEntries;
  return field.type() == FieldDescriptor::TYPE_BYTES ? L::kBytesBytes : L::kTextBytes;
}

absl::Status CheckRequestLimits(const Message& request) { return CheckMessage(request, ""); }

}  // namespace edgefleet::server
