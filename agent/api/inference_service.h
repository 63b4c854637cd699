// The agent's local inference API (gRPC on a Unix socket) for applications on the device.
#pragma once

#include <functional>

#include "agent/serving/model_host.h"
#include "edgefleet/v1/inference.grpc.pb.h"

namespace edgefleet::agent {

class InferenceGrpcService final : public v1::InferenceService::Service {
 public:
  // `status` answers GetAgentStatus; without it the call is UNIMPLEMENTED.
  explicit InferenceGrpcService(ModelHost& host, std::function<v1::AgentStatus()> status = {})
      : host_(host), status_(std::move(status)) {}

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*,
                       v1::PredictResponse*) override;
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListLocalModelsRequest*,
                          v1::ListLocalModelsResponse*) override;
  grpc::Status GetAgentStatus(grpc::ServerContext*, const v1::GetAgentStatusRequest*,
                              v1::AgentStatus*) override;

 private:
  ModelHost& host_;
  std::function<v1::AgentStatus()> status_;
};

}  // namespace edgefleet::agent
