// The local inference API as an application sees it over the Unix socket: when every inference
// thread is busy and the queue is full, Predict fails at once with RESOURCE_EXHAUSTED and a
// message that says why, and the requests already taken are answered.
#include "agent/api/inference_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/serving/model_host.h"
#include "tests/agent/serving/blocking_engine.h"
#include "tests/fakes/scratch_dir.h"

namespace edgefleet::agent {
namespace {

TEST(InferenceServiceTest, PredictIsRefusedWithResourceExhaustedWhenTheInferenceQueueIsFull) {
  fakes::ScratchDir dir("ef_api");
  ASSERT_FALSE(dir.path().empty());
  ModelHost host(InferencePoolOptions{.threads = 1, .queue_limit = 1});
  auto engine = std::make_shared<testing::BlockingEngine>(/*blocked=*/true);
  v1::ModelVersion metadata;
  metadata.set_model_name("m");
  metadata.set_version("7");
  host.Swap(std::make_shared<ServingModel>(ServingModel{"m", "7", metadata, engine, nullptr}));

  InferenceGrpcService service(host);
  const std::string address = absl::StrCat("unix:", (dir.path() / "agent.sock").string());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  v1::PredictRequest request;
  request.set_model_name("m");
  v1::Tensor* input = request.add_inputs();
  input->set_name("x");
  input->add_shape(1);
  input->add_data(1.0f);
  auto predict = [&](v1::PredictResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return stub->Predict(&context, request, response);
  };

  v1::PredictResponse first_answer, second_answer;
  grpc::Status first_status, second_status;
  std::thread first([&] { first_status = predict(&first_answer); });
  engine->WaitUntilEntered(1);
  std::thread second([&] { second_status = predict(&second_answer); });
  while (host.InferenceWaiting() < 1) std::this_thread::yield();

  v1::PredictResponse refused_answer;
  grpc::Status refused = predict(&refused_answer);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("inference queue is full"));

  engine->Release();
  first.join();
  second.join();
  EXPECT_TRUE(first_status.ok()) << first_status.error_message();
  EXPECT_TRUE(second_status.ok()) << second_status.error_message();
  EXPECT_EQ(first_answer.version(), "7");
  EXPECT_EQ(second_answer.version(), "7");
  server->Shutdown();
}

}  // namespace
}  // namespace edgefleet::agent
