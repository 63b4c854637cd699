#include "agent/api/inference_service.h"

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {
namespace {

constexpr int kMaxInputs = 64;
constexpr size_t kMaxElements = 64 << 20;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

}  // namespace

grpc::Status InferenceGrpcService::Predict(grpc::ServerContext*, const v1::PredictRequest* request,
                                           v1::PredictResponse* response) {
  if (request->model_name().empty()) return Invalid("model_name is required");
  if (request->inputs().empty()) return Invalid("at least one input tensor is required");
  if (request->inputs_size() > kMaxInputs) return Invalid("too many input tensors");
  std::vector<TensorData> inputs;
  for (const v1::Tensor& t : request->inputs()) {
    if (t.name().empty()) return Invalid("every input tensor needs a name");
    size_t count = 1;
    for (int64_t d : t.shape()) {
      if (d <= 0 || static_cast<size_t>(d) > kMaxElements / count) {
        return Invalid(absl::StrCat("input '", t.name(), "' has an invalid shape"));
      }
      count *= static_cast<size_t>(d);
    }
    if (t.shape().empty() || count != static_cast<size_t>(t.data_size())) {
      return Invalid(absl::StrCat("input '", t.name(), "' has ", t.data_size(),
                                  " values but its shape holds ", t.shape().empty() ? 0 : count));
    }
    inputs.push_back(
        {t.name(), {t.shape().begin(), t.shape().end()}, {t.data().begin(), t.data().end()}});
  }
  std::vector<std::string> output_names(request->output_names().begin(),
                                        request->output_names().end());
  auto prediction = host_.Predict(request->model_name(), inputs, output_names);
  if (!prediction.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(prediction.status().code()),
                        std::string(prediction.status().message()));
  }
  response->set_model_name(request->model_name());
  response->set_version(prediction->version);
  for (const TensorData& out : prediction->outputs) {
    v1::Tensor* t = response->add_outputs();
    t->set_name(out.name);
    t->mutable_shape()->Add(out.shape.begin(), out.shape.end());
    t->mutable_data()->Add(out.data.begin(), out.data.end());
  }
  return grpc::Status::OK;
}

grpc::Status InferenceGrpcService::ListModels(grpc::ServerContext*,
                                              const v1::ListLocalModelsRequest*,
                                              v1::ListLocalModelsResponse* response) {
  for (const auto& model : host_.All()) {
    v1::LocalModel* m = response->add_models();
    m->set_model_name(model->model_name);
    m->set_version(model->version);
    m->set_state(v1::MODEL_STATE_SERVING);
    *m->mutable_inputs() = model->metadata.inputs();
    *m->mutable_outputs() = model->metadata.outputs();
  }
  return grpc::Status::OK;
}

grpc::Status InferenceGrpcService::GetAgentStatus(grpc::ServerContext*,
                                                  const v1::GetAgentStatusRequest*,
                                                  v1::AgentStatus* response) {
  if (!status_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no agent status here");
  *response = status_();
  return grpc::Status::OK;
}

}  // namespace edgefleet::agent
