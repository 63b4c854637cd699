// Fuzzing REST JSON request bodies: what the admin gateway does with a body before any handler
// touches the database — parse (protobuf JSON mapping), bound (CheckRequestLimits) and validate.
#include <google/protobuf/util/json_util.h>

#include <memory>
#include <string>
#include <vector>

#include "common/capture/capture_spec.h"
#include "common/core/labels.h"
#include "common/core/names.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/api/admin_calls.h"
#include "server/api/request_limits.h"
#include "server/http/admin_http_server.h"
#include "server/rollout/wave_plan.h"
#include "server/telemetry/drift_service.h"
#include "tests/fuzz/input_targets.h"

namespace edgefleet::fuzz {
namespace {

using google::protobuf::Message;

// The calls whose REST route takes a JSON body, in table order.
const std::vector<const server::AdminCall*>& JsonCalls() {
  static const auto* calls = [] {
    auto* out = new std::vector<const server::AdminCall*>;
    for (const server::AdminCall& call : server::AdminCalls()) {
      if (call.rest && call.rest->body == server::RestBody::kJson) out->push_back(&call);
    }
    return out;
  }();
  return *calls;
}

// The pure checks the handlers make before their transaction (server/api/admin_api.cpp).
absl::Status Validate(const Message& request) {
  if (const auto* rollout = dynamic_cast<const v1::CreateRolloutRequest*>(&request)) {
    auto definition = server::rollout::ValidateCreateRollout(*rollout);
    if (!definition.ok()) return definition.status();
    // What the controller reads back from the store must validate as it did when created.
    auto again = server::rollout::DefinitionOf(server::rollout::NewRollout(*definition));
    Require(again.ok(), "a rollout that validated does not validate when read back");
    return absl::OkStatus();
  }
  if (const auto* deployment = dynamic_cast<const v1::CreateDeploymentRequest*>(&request)) {
    if (auto s = ValidateModelName(deployment->model_name()); !s.ok()) return s;
    if (auto s = ValidateVersion(deployment->version()); !s.ok()) return s;
    auto selector = ParseLabelSelector(deployment->label_selector());
    if (!selector.ok()) return selector.status();
    Require(ParseLabelSelector(FormatLabels(*selector)).ok(),
            "a parsed label selector does not parse again once formatted");
    return capture::ValidateCaptureSpec(deployment->capture());
  }
  // Labels as the handlers take them: each key=value must parse as a one-label selector.
  const google::protobuf::Map<std::string, std::string>* labels = nullptr;
  if (const auto* label = dynamic_cast<const v1::LabelDeviceRequest*>(&request)) {
    labels = &label->set_labels();
  } else if (const auto* token = dynamic_cast<const v1::CreateEnrollmentTokenRequest*>(&request)) {
    labels = &token->labels();
  }
  if (labels != nullptr) {
    for (const auto& [key, value] : *labels) {
      if (auto parsed = ParseLabelSelector(key + "=" + value); !parsed.ok()) return parsed.status();
    }
    return absl::OkStatus();
  }
  if (const auto* drift = dynamic_cast<const v1::SetDriftThresholdsRequest*>(&request)) {
    return server::telemetry::ValidateDriftThresholds(*drift);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunRestJson(std::string_view input) {
  if (input.empty()) return absl::InvalidArgumentError("empty input");
  const auto& calls = JsonCalls();
  Require(!calls.empty(), "the admin table has calls with JSON bodies");
  const server::AdminCall& call = *calls[static_cast<unsigned char>(input[0]) % calls.size()];
  std::unique_ptr<Message> request(call.request_prototype->New());
  if (auto s = server::ParseJsonBody(std::string(input.substr(1)), request.get()); !s.ok()) {
    Require(!s.message().empty(), "a refused body says why");
    return s;
  }
  if (auto s = server::CheckRequestLimits(*request); !s.ok()) return s;
  // The answer path prints messages back as JSON; a parsed request must print.
  std::string json;
  Require(google::protobuf::util::MessageToJsonString(*request, &json).ok(),
          "a request that parsed does not print as JSON");
  return Validate(*request);
}

}  // namespace edgefleet::fuzz
