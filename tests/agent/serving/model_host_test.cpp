#include "agent/serving/model_host.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "agent/engine/opencv_engine.h"
#include "agent/serving/version_monitor.h"
#include "common/telemetry/telemetry_codec.h"
#include "tests/fakes/test_release.h"

namespace edgefleet::agent {
namespace {

using fakes::LoadExpected;
using fakes::TestDataPath;

constexpr float kTolerance = 1e-4f;

v1::ModelVersion ClassifierMetadata(const std::string& version) {
  v1::ModelVersion metadata;
  metadata.set_model_name("classifier");
  metadata.set_version(version);
  v1::TensorSpec* input = metadata.add_inputs();
  input->set_name("input");
  input->add_shape(1);
  input->add_shape(4);
  v1::TensorSpec* output = metadata.add_outputs();
  output->set_name("probs");
  output->add_shape(1);
  output->add_shape(3);
  return metadata;
}

std::shared_ptr<InferenceEngine> LoadEngine(const std::string& file) {
  auto engine = MakeOpenCvEngineFactory()->Load(TestDataPath(file));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::shared_ptr<InferenceEngine>(*std::move(engine)) : nullptr;
}

std::shared_ptr<const ServingModel> Serving(const std::string& version, const std::string& file) {
  auto engine = LoadEngine(file);
  if (!engine) return nullptr;
  return std::make_shared<ServingModel>(
      ServingModel{"classifier", version, ClassifierMetadata(version), engine, nullptr});
}

bool Near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(a[i] - b[i]) > kTolerance) return false;
  }
  return true;
}

class ModelHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    expected_ = LoadExpected();
    ASSERT_EQ(expected_.count("classifier_v1.onnx"), 1u)
        << "missing " << TestDataPath("expected.txt");
    ASSERT_EQ(expected_.count("classifier_v2.onnx"), 1u);
    inputs_ = expected_["classifier_v1.onnx"].inputs;
    v1_probs_ = expected_["classifier_v1.onnx"].outputs.at(0).data;
    v2_probs_ = expected_["classifier_v2.onnx"].outputs.at(0).data;
    ASSERT_FALSE(Near(v1_probs_, v2_probs_)) << "v1 and v2 must answer differently";
  }

  std::map<std::string, fakes::ExpectedCase> expected_;
  std::vector<TensorData> inputs_;
  std::vector<float> v1_probs_;
  std::vector<float> v2_probs_;
};

// The hot-swap guarantee: requests racing with swaps never fail and never see a mixture; each
// answer is exactly the answer of the version it names.
TEST_F(ModelHostTest, SwapUnderConcurrentPredictNeverFailsAndAnswersMatchTheirVersion) {
  ModelHost host;
  auto v1 = Serving("1.0", "classifier_v1.onnx");
  auto v2 = Serving("2.0", "classifier_v2.onnx");
  ASSERT_TRUE(v1 && v2);
  host.Swap(v1);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> failures{0}, mismatches{0}, v1_answers{0}, v2_answers{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        auto prediction = host.Predict("classifier", inputs_, {});
        if (!prediction.ok() || prediction->outputs.size() != 1) {
          ++failures;
          continue;
        }
        const std::vector<float>& probs = prediction->outputs[0].data;
        if (prediction->version == "1.0" && Near(probs, v1_probs_)) {
          ++v1_answers;
        } else if (prediction->version == "2.0" && Near(probs, v2_probs_)) {
          ++v2_answers;
        } else {
          ++mismatches;
        }
      }
    });
  }
  // Swap back and forth, each time waiting until some request was answered by the new version,
  // so the swaps really interleave with running requests.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool progressed = true;
  for (int round = 0; round < 40 && progressed; ++round) {
    const bool to_v2 = round % 2 == 0;
    std::atomic<uint64_t>& counter = to_v2 ? v2_answers : v1_answers;
    const uint64_t before = counter.load();
    // The replaced model is dropped here; in-flight requests must keep it alive themselves.
    host.Swap(to_v2 ? v2 : v1);
    while (counter.load() < before + 5) {
      if (std::chrono::steady_clock::now() > deadline) {
        progressed = false;
        break;
      }
      std::this_thread::yield();
    }
  }
  stop = true;
  for (auto& t : threads) t.join();

  EXPECT_TRUE(progressed) << "predictions stalled";
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_EQ(mismatches.load(), 0u);
  EXPECT_GT(v1_answers.load(), 0u);
  EXPECT_GT(v2_answers.load(), 0u);
  EXPECT_EQ(host.Get("classifier")->version, "1.0");
}

TEST_F(ModelHostTest, SwapReturnsTheReplacedModel) {
  ModelHost host;
  auto v1 = Serving("1.0", "classifier_v1.onnx");
  auto v2 = Serving("2.0", "classifier_v2.onnx");
  ASSERT_TRUE(v1 && v2);
  EXPECT_EQ(host.Swap(v1), nullptr);
  EXPECT_EQ(host.Swap(v2), v1);
  ASSERT_EQ(host.All().size(), 1u);
  EXPECT_EQ(host.All()[0]->version, "2.0");
}

// Each version's observer sees exactly the answers of that version, across a swap; Remove stops
// serving the model.
TEST_F(ModelHostTest, EachVersionsObserverSeesItsOwnAnswers) {
  ModelHost host;
  auto m1 = std::make_shared<VersionMonitor>();
  auto m2 = std::make_shared<VersionMonitor>();
  host.Swap(std::make_shared<ServingModel>(ServingModel{
      "classifier", "1.0", ClassifierMetadata("1.0"), LoadEngine("classifier_v1.onnx"), m1}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(host.Predict("classifier", inputs_, {}).ok());
  std::vector<TensorData> malformed = inputs_;
  malformed[0].name = "no_such_input";
  EXPECT_FALSE(host.Predict("classifier", malformed, {}).ok());
  host.Swap(std::make_shared<ServingModel>(ServingModel{
      "classifier", "2.0", ClassifierMetadata("2.0"), LoadEngine("classifier_v2.onnx"), m2}));
  ASSERT_TRUE(host.Predict("classifier", inputs_, {}).ok());

  const VersionMonitor::Snapshot first = m1->Read();
  EXPECT_EQ(first.answers, 4u);
  EXPECT_EQ(first.errors, 0u) << "a malformed request is the caller's, not the version's";
  EXPECT_EQ(first.non_finite, 0u);
  EXPECT_EQ(first.latency_samples, 4u);
  ASSERT_TRUE(first.p95_seconds.has_value());
  EXPECT_GT(*first.p95_seconds, 0.0);
  EXPECT_EQ(m2->Read().answers, 1u);

  EXPECT_NE(host.Remove("classifier"), nullptr);
  EXPECT_EQ(host.Predict("classifier", inputs_, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST(VersionMonitorTest, CountsErrorsNonFiniteAnswersAndTheRecentP95) {
  VersionMonitor monitor;
  EXPECT_FALSE(monitor.Read().p95_seconds.has_value());
  const std::vector<TensorData> finite{{"probs", {1, 2}, {0.5f, 0.5f}}};
  const std::vector<TensorData> nan{{"probs", {1, 2}, {0.5f, std::nanf("")}}};
  const std::vector<TensorData> inf{{"a", {1}, {1.0f}}, {"b", {1}, {HUGE_VALF}}};
  // 100 answers taking 1..100 ms: the p95 is 95 ms.
  for (int ms = 1; ms <= 100; ++ms) monitor.OnAnswer(finite, std::chrono::milliseconds(ms));
  monitor.OnAnswer(nan, std::chrono::milliseconds(1));
  monitor.OnAnswer(inf, std::chrono::milliseconds(1));
  monitor.OnAnswer(absl::InternalError("engine failed"), std::chrono::milliseconds(1));
  monitor.OnAnswer(absl::InvalidArgumentError("bad input"), std::chrono::milliseconds(1));
  const VersionMonitor::Snapshot s = monitor.Read();
  EXPECT_EQ(s.answers, 104u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.non_finite, 2u);
  EXPECT_EQ(s.latency_samples, 104u);
  ASSERT_TRUE(s.p95_seconds.has_value());
  EXPECT_NEAR(*s.p95_seconds, 0.095, 1e-6);

  // Only the most recent answers count: a slow past is forgotten.
  for (size_t i = 0; i < VersionMonitor::kLatencySamples; ++i) {
    monitor.OnAnswer(finite, std::chrono::microseconds(500));
  }
  EXPECT_NEAR(*monitor.Read().p95_seconds, 0.0005, 1e-6);
}

TEST_F(ModelHostTest, PredictOnUnknownModelIsNotFound) {
  ModelHost host;
  auto v1 = Serving("1.0", "classifier_v1.onnx");
  ASSERT_TRUE(v1);
  host.Swap(v1);
  auto prediction = host.Predict("detector", inputs_, {});
  EXPECT_EQ(prediction.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(prediction.status().message()), ::testing::HasSubstr("detector"));
  // Other models are unaffected.
  EXPECT_TRUE(host.Predict("classifier", inputs_, {}).ok());
}

TEST_F(ModelHostTest, WarmUpRefusesModelsThatCannotAnswer) {
  auto engine = LoadEngine("classifier_v1.onnx");
  ASSERT_TRUE(engine);
  EXPECT_TRUE(WarmUp(*engine, ClassifierMetadata("1.0")).ok());

  v1::ModelVersion no_inputs = ClassifierMetadata("1.0");
  no_inputs.clear_inputs();
  absl::Status s = WarmUp(*engine, no_inputs);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("no inputs"));

  // Metadata that does not describe the model (an input the model does not have).
  v1::ModelVersion wrong_input = ClassifierMetadata("1.0");
  wrong_input.mutable_inputs(0)->set_name("pixels");
  EXPECT_FALSE(WarmUp(*engine, wrong_input).ok());

  // A shape too large to allocate is a refusal, not a crash.
  v1::ModelVersion huge = ClassifierMetadata("1.0");
  huge.mutable_inputs(0)->set_shape(1, int64_t{1} << 40);
  EXPECT_EQ(WarmUp(*engine, huge).code(), absl::StatusCode::kFailedPrecondition);
  huge.mutable_inputs(0)->set_shape(0, int64_t{1} << 32);
  huge.mutable_inputs(0)->set_shape(1, int64_t{1} << 32);  // the product overflows 64 bits
  EXPECT_EQ(WarmUp(*engine, huge).code(), absl::StatusCode::kFailedPrecondition);

  // Dynamic dimensions are warmed up as 1.
  v1::ModelVersion dynamic_batch = ClassifierMetadata("1.0");
  dynamic_batch.mutable_inputs(0)->set_shape(0, -1);
  EXPECT_TRUE(WarmUp(*engine, dynamic_batch).ok());
}

TEST_F(ModelHostTest, CutTelemetryGivesAWindowPerVersionAndStartsAfresh) {
  ModelHost host;
  auto v1 = Serving("1.0", "classifier_v1.onnx");
  auto v2 = Serving("2.0", "classifier_v2.onnx");
  ASSERT_TRUE(v1 && v2);
  host.Swap(v1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(host.Predict("classifier", inputs_, {}).ok());
  std::vector<TensorData> bad = inputs_;
  bad[0].name = "pixels";
  EXPECT_FALSE(host.Predict("classifier", bad, {}).ok());
  host.Swap(v2);  // 1.0's window ends here, with what it served
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(host.Predict("classifier", inputs_, {}).ok());
  // Unknown models are not telemetry of any version.
  EXPECT_FALSE(host.Predict("detector", inputs_, {}).ok());

  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'900'000'000));
  auto windows = host.CutTelemetry(now);
  ASSERT_EQ(windows.size(), 2u);
  std::map<std::string, v1::TelemetryWindow> by_version;
  for (const auto& w : windows) {
    EXPECT_EQ(w.model_name(), "classifier");
    by_version[w.version()] = w;
  }
  EXPECT_EQ(by_version["1.0"].request_count(), 4u);
  ASSERT_EQ(by_version["1.0"].errors_size(), 1);
  EXPECT_EQ(by_version["1.0"].errors(0).reason(), v1::PREDICT_ERROR_REASON_INVALID_INPUT);
  EXPECT_LT(by_version["1.0"].window_end().seconds(), 1'900'000'000) << "cut at the swap";
  EXPECT_EQ(by_version["2.0"].request_count(), 2u);
  EXPECT_EQ(by_version["2.0"].errors_size(), 0);
  EXPECT_EQ(by_version["2.0"].window_end().seconds(), 1'900'000'000);
  auto latency = telemetry::FromProto(by_version["2.0"].latency());
  ASSERT_TRUE(latency.ok()) << latency.status();
  EXPECT_EQ(latency->count(), 2u);
  EXPECT_GT(*latency->Quantile(0.5), 0.0);
  // The classifier's 3 classes are binned without a reference profile.
  EXPECT_EQ(by_version["2.0"].outputs().bins_size(), 3);

  // The next window starts where this one ended, counts nothing twice, and a quiet version
  // still reports its (empty) window.
  ASSERT_TRUE(host.Predict("classifier", inputs_, {}).ok());
  auto next = host.CutTelemetry(now + std::chrono::seconds(60));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].version(), "2.0");
  EXPECT_EQ(next[0].request_count(), 1u);
  EXPECT_EQ(next[0].window_start().seconds(), 1'900'000'000);
  auto quiet = host.CutTelemetry(now + std::chrono::seconds(120));
  ASSERT_EQ(quiet.size(), 1u);
  EXPECT_EQ(quiet[0].request_count(), 0u);
  host.Remove("classifier");
  auto removed = host.CutTelemetry(now + std::chrono::seconds(180));
  ASSERT_EQ(removed.size(), 1u) << "the removed version's last window";
  EXPECT_TRUE(host.CutTelemetry(now + std::chrono::seconds(240)).empty());
}

}  // namespace
}  // namespace edgefleet::agent
