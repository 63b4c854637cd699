// What the inference threads promise the applications on a device: inference runs on a fixed
// set of threads however many callers come and go (so per-thread runtime state stays bounded),
// and a full queue is refused at once with a status that says so.
#include "agent/serving/inference_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "agent/serving/model_host.h"
#include "tests/agent/serving/blocking_engine.h"

namespace edgefleet::agent {
namespace {

using testing::BlockingEngine;

std::shared_ptr<const ServingModel> Serve(std::shared_ptr<InferenceEngine> engine) {
  v1::ModelVersion metadata;
  metadata.set_model_name("m");
  metadata.set_version("1");
  return std::make_shared<ServingModel>(
      ServingModel{"m", "1", metadata, std::move(engine), nullptr});
}

const std::vector<TensorData> kInput{{"x", {1}, {1.0f}}};

TEST(InferencePoolTest, InferenceRunsOnTheSameFewThreadsWhileCallerThreadsComeAndGo) {
  ModelHost host(InferencePoolOptions{.threads = 2, .queue_limit = 64});
  auto engine = std::make_shared<BlockingEngine>(/*blocked=*/false);
  host.Swap(Serve(engine));

  std::mutex mu;
  std::set<std::thread::id> callers;
  std::atomic<int> failures{0};
  // 40 rounds of 4 short-lived caller threads, as a gRPC server starts and retires workers.
  for (int round = 0; round < 40; ++round) {
    std::vector<std::thread> batch;
    for (int i = 0; i < 4; ++i) {
      batch.emplace_back([&] {
        {
          std::lock_guard lock(mu);
          callers.insert(std::this_thread::get_id());
        }
        for (int k = 0; k < 3; ++k) {
          if (!host.Predict("m", kInput, {}).ok()) ++failures;
        }
      });
    }
    for (std::thread& t : batch) t.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(engine->runs(), 40 * 4 * 3);
  const std::set<std::thread::id> ran_on = engine->threads();
  EXPECT_LE(ran_on.size(), 2u) << "inference must run only on the host's own threads";
  for (const std::thread::id& id : ran_on) EXPECT_EQ(callers.count(id), 0u);
}

TEST(InferencePoolTest, AFullQueueIsRefusedAtOnceWithResourceExhausted) {
  ModelHost host(InferencePoolOptions{.threads = 1, .queue_limit = 1});
  auto engine = std::make_shared<BlockingEngine>(/*blocked=*/true);
  host.Swap(Serve(engine));

  absl::StatusOr<Prediction> running = absl::UnknownError("not run"),
                             queued = absl::UnknownError("not run");
  std::thread first([&] { running = host.Predict("m", kInput, {}); });
  engine->WaitUntilEntered(1);  // the only thread is busy
  std::thread second([&] { queued = host.Predict("m", kInput, {}); });
  while (host.InferenceWaiting() < 1) std::this_thread::yield();  // the queue is full

  absl::StatusOr<Prediction> refused = host.Predict("m", kInput, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("inference queue is full"));

  engine->Release();
  first.join();
  second.join();
  EXPECT_TRUE(running.ok()) << running.status();
  EXPECT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(engine->runs(), 2) << "the refused request must not have run";
  // Nothing waits any more: requests are taken again.
  EXPECT_TRUE(host.Predict("m", kInput, {}).ok());
}

TEST(InferencePoolTest, QueuedWorkFinishesBeforeThePoolGoesAway) {
  auto engine = std::make_shared<BlockingEngine>(/*blocked=*/true);
  std::atomic<int> done{0};
  std::vector<std::thread> callers;
  {
    InferencePool pool(InferencePoolOptions{.threads = 1, .queue_limit = 4});
    for (int i = 0; i < 3; ++i) {
      callers.emplace_back([&] {
        absl::Status s = pool.Run([&] { EXPECT_TRUE(engine->Run(kInput, {}).ok()); });
        if (s.ok()) ++done;
      });
    }
    engine->WaitUntilEntered(1);
    while (pool.waiting() < 2) std::this_thread::yield();
    engine->Release();
  }  // the destructor lets the two queued requests run
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_EQ(engine->runs(), 3);
}

}  // namespace
}  // namespace edgefleet::agent
