#include "agent/engine/opencv_engine.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace edgefleet::agent {
namespace {

constexpr float kTolerance = 1e-4f;

std::string ModelPath(const std::string& file) {
  return std::string(EDGEFLEET_TEST_DATA_DIR) + "/" + file;
}

struct ExpectedCase {
  std::vector<TensorData> inputs;
  std::vector<TensorData> outputs;
};

// expected.txt is written by tests/models/make_models.py next to the models (the same numbers as
// expected.json), one tensor per line: "FILE input|output NAME D1,D2,... V1 V2 ...";
// make_demo_models.py writes vision_expected.txt the same way.
std::map<std::string, ExpectedCase> LoadExpected(const std::string& file = "expected.txt") {
  std::ifstream in(ModelPath(file));
  EXPECT_TRUE(in.good()) << "missing " << ModelPath(file);
  std::map<std::string, ExpectedCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string file, kind, dims;
    TensorData t;
    fields >> file >> kind >> t.name >> dims;
    std::istringstream dim_stream(dims);
    for (std::string dim; std::getline(dim_stream, dim, ',');) t.shape.push_back(std::stoll(dim));
    for (double v; fields >> v;) t.data.push_back(static_cast<float>(v));
    EXPECT_TRUE(fields.eof()) << "bad line: " << line;
    (kind == "input" ? cases[file].inputs : cases[file].outputs).push_back(std::move(t));
  }
  EXPECT_FALSE(cases.empty());
  return cases;
}

void ExpectTensorNear(const TensorData& actual, const TensorData& expected, float tolerance) {
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.shape, expected.shape) << "output " << expected.name;
  ASSERT_EQ(actual.data.size(), expected.data.size()) << "output " << expected.name;
  for (size_t i = 0; i < expected.data.size(); ++i) {
    EXPECT_NEAR(actual.data[i], expected.data[i], tolerance)
        << "output " << expected.name << " element " << i;
  }
}

std::unique_ptr<InferenceEngine> MustLoad(const std::string& file) {
  auto engine = MakeOpenCvEngineFactory()->Load(ModelPath(file));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

int ArgMax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "engine_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs each of `files` (models with one output, "probs") on its expected inputs and checks the
// answer against numpy's; returns the answers.
std::vector<std::vector<float>> ExpectProbsMatchNumpy(std::map<std::string, ExpectedCase>& expected,
                                                      const std::vector<std::string>& files) {
  std::vector<std::vector<float>> answers;
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    answers.emplace_back();
    if (!expected.count(file)) {
      ADD_FAILURE() << "no expected answers for " << file;
      continue;
    }
    auto engine = MustLoad(file);
    if (engine == nullptr) continue;
    EXPECT_EQ(engine->OutputNames(), std::vector<std::string>{"probs"});
    auto out = engine->Run(expected[file].inputs, {});
    if (!out.ok() || out->size() != 1u) {
      ADD_FAILURE() << "run: " << out.status();
      continue;
    }
    ExpectTensorNear((*out)[0], expected[file].outputs[0], kTolerance);
    answers.back() = (*out)[0].data;
  }
  return answers;
}

TEST(OpenCvEngineTest, ClassifiersMatchNumpyAndDifferBetweenVersions) {
  auto expected = LoadExpected();
  auto answers = ExpectProbsMatchNumpy(expected, {"classifier_v1.onnx", "classifier_v2.onnx"});
  // Hot-swap tests rely on v1 and v2 giving visibly different answers.
  EXPECT_NE(ArgMax(answers[0]), ArgMax(answers[1]));
}

// The demo's image CNN (tests/models/make_demo_models.py): v1 and v2 answer the sample image as
// numpy does, with different top classes; v3 answers finite for warm-up's zeros and NaN for it.
TEST(OpenCvEngineTest, DemoVisionModelsMatchNumpyAndV3AnswersNaNOnlyToRealImages) {
  auto expected = LoadExpected("vision_expected.txt");
  for (const std::string file : {"vision_v1.onnx", "vision_v2.onnx", "vision_v3.onnx"}) {
    EXPECT_GT(std::filesystem::file_size(ModelPath(file)), 4'000'000u) << file << ": a few MB";
  }
  auto answers = ExpectProbsMatchNumpy(expected, {"vision_v1.onnx", "vision_v2.onnx"});
  EXPECT_NE(ArgMax(answers[0]), ArgMax(answers[1]));

  auto v3 = MustLoad("vision_v3.onnx");
  ASSERT_NE(v3, nullptr);
  TensorData zeros = expected["vision_v1.onnx"].inputs[0];
  std::fill(zeros.data.begin(), zeros.data.end(), 0.0f);
  auto warm_up = v3->Run({zeros}, {});
  ASSERT_TRUE(warm_up.ok()) << warm_up.status();
  ASSERT_EQ(warm_up->size(), 1u);
  EXPECT_EQ((*warm_up)[0].shape, (std::vector<int64_t>{1, 10}));
  EXPECT_TRUE(std::all_of((*warm_up)[0].data.begin(), (*warm_up)[0].data.end(),
                          [](float v) { return std::isfinite(v); }));
  auto real = v3->Run(expected["vision_v1.onnx"].inputs, {});
  ASSERT_TRUE(real.ok()) << real.status();
  ASSERT_EQ(real->size(), 1u);
  EXPECT_TRUE(std::all_of((*real)[0].data.begin(), (*real)[0].data.end(),
                          [](float v) { return std::isnan(v); }));
}

TEST(OpenCvEngineTest, ConvModelMatchesNumpy) {
  auto expected = LoadExpected();
  auto engine = MustLoad("conv_v1.onnx");
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->OutputNames(), std::vector<std::string>{"scores"});
  auto out = engine->Run(expected["conv_v1.onnx"].inputs, {"scores"});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  ExpectTensorNear((*out)[0], expected["conv_v1.onnx"].outputs[0], kTolerance);
}

TEST(OpenCvEngineTest, ReportsRuntimeName) {
  auto engine = MustLoad("classifier_v1.onnx");
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->RuntimeName().rfind("opencv-dnn 4.", 0), 0u) << engine->RuntimeName();
}

TEST(OpenCvEngineTest, TruncatedModelFailsToLoad) {
  const std::string path = ModelPath("broken.onnx");
  ASSERT_TRUE(std::filesystem::exists(path));
  auto engine = MakeOpenCvEngineFactory()->Load(path);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument) << engine.status();
  EXPECT_NE(engine.status().message().find("load model " + path), std::string::npos)
      << engine.status();
}

TEST(OpenCvEngineTest, EmptyAndGarbageFilesFailToLoad) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const auto empty = dir.path() / "empty.onnx";
  const auto garbage = dir.path() / "garbage.onnx";
  std::ofstream(empty).close();
  std::ofstream(garbage) << "this is not a protobuf \xff\xff\xff\xff";
  for (const auto& path : {empty, garbage}) {
    auto engine = MakeOpenCvEngineFactory()->Load(path.string());
    EXPECT_FALSE(engine.ok()) << path;
  }
}

TEST(OpenCvEngineTest, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = (dir.path() / "nope.onnx").string();
  auto engine = MakeOpenCvEngineFactory()->Load(path);
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(engine.status().message().find(path), std::string::npos) << engine.status();
}

TEST(OpenCvEngineTest, MalformedInputsAreInvalidArgument) {
  auto engine = MustLoad("classifier_v1.onnx");
  ASSERT_NE(engine, nullptr);
  struct Case {
    std::string what;
    std::vector<TensorData> inputs;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"too few values", {{"input", {1, 4}, {1, 2, 3}}}, "needs 4 values, got 3"},
      {"too many values", {{"input", {1, 4}, {1, 2, 3, 4, 5}}}, "needs 4 values, got 5"},
      {"zero dimension", {{"input", {1, 0}, {}}}, "out of range"},
      {"negative dimension", {{"input", {-1, 4}, {1, 2, 3, 4}}}, "out of range"},
      {"empty shape", {{"input", {}, {1}}}, "empty shape"},
      {"no name", {{"", {1, 4}, {1, 2, 3, 4}}}, "no name"},
      {"no inputs", {}, "no inputs"},
      {"duplicate",
       {{"input", {1, 4}, {1, 2, 3, 4}}, {"input", {1, 4}, {1, 2, 3, 4}}},
       "given twice"},
      {"overflowing shape", {{"input", {1 << 30, 1 << 30, 1 << 30}, {1}}}, "values, got 1"},
  };
  for (const Case& c : cases) {
    auto out = engine->Run(c.inputs, {});
    ASSERT_FALSE(out.ok()) << c.what;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(out.status().message().find(c.message), std::string::npos)
        << c.what << ": " << out.status();
  }
}

TEST(OpenCvEngineTest, UnknownNamesAreErrorsAndEngineStaysUsable) {
  auto expected = LoadExpected()["classifier_v1.onnx"];
  auto engine = MustLoad("classifier_v1.onnx");
  ASSERT_NE(engine, nullptr);

  std::vector<TensorData> wrong_name = expected.inputs;
  wrong_name[0].name = "not_an_input";
  auto out = engine->Run(wrong_name, {});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("not_an_input"), std::string::npos) << out.status();

  out = engine->Run(expected.inputs, {"not_an_output"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("unknown output 'not_an_output'"), std::string::npos)
      << out.status();

  // A shape with the right element count but the wrong layout fails inside the network.
  std::vector<TensorData> transposed = expected.inputs;
  transposed[0].shape = {4, 1};
  out = engine->Run(transposed, {});
  EXPECT_FALSE(out.ok());

  // Failed runs must not poison the network for the next caller.
  out = engine->Run(expected.inputs, {});
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectTensorNear((*out)[0], expected.outputs[0], kTolerance);
}

TEST(OpenCvEngineTest, ConcurrentRunsGiveCorrectAnswers) {
  auto expected = LoadExpected()["classifier_v2.onnx"];
  auto engine = MustLoad("classifier_v2.onnx");
  ASSERT_NE(engine, nullptr);

  // Two different inputs, so that a run mixing up another thread's input shows.
  std::vector<TensorData> input_a = expected.inputs;
  std::vector<TensorData> input_b = expected.inputs;
  for (float& v : input_b[0].data) v = -2 * v + 1;
  auto ref_a = engine->Run(input_a, {});
  auto ref_b = engine->Run(input_b, {});
  ASSERT_TRUE(ref_a.ok() && ref_b.ok());
  ExpectTensorNear((*ref_a)[0], expected.outputs[0], kTolerance);
  ASSERT_NE(ArgMax((*ref_a)[0].data), ArgMax((*ref_b)[0].data));

  constexpr int kThreads = 4;
  constexpr int kRuns = 2000;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRuns; ++i) {
        const bool use_a = (i + t) % 2 == 0;
        auto out = engine->Run(use_a ? input_a : input_b, {});
        const auto& want = use_a ? (*ref_a)[0].data : (*ref_b)[0].data;
        if (!out.ok() || out->size() != 1 || (*out)[0].data.size() != want.size()) {
          ++mismatches[t];
          continue;
        }
        for (size_t k = 0; k < want.size(); ++k) {
          if (std::abs((*out)[0].data[k] - want[k]) > 1e-6f) {
            ++mismatches[t];
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace edgefleet::agent
