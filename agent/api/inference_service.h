// The agent's local inference API (gRPC on a Unix socket) for applications on the device.
#pragma once

#include "agent/serving/model_host.h"
#include "edgefleet/v1/inference.grpc.pb.h"

namespace edgefleet::agent {

class InferenceGrpcService final : public v1::InferenceService::Service {
 public:
  explicit InferenceGrpcService(ModelHost& host) : host_(host) {}

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest*,
                       v1::PredictResponse*) override;
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListLocalModelsRequest*,
                          v1::ListLocalModelsResponse*) override;

 private:
  ModelHost& host_;
};

}  // namespace edgefleet::agent
