// ParseOnnxSignature: the graph inputs and outputs of the generated test models, and hostile
// input (what the server runs on every pushed file).
#include "common/delta/onnx_signature.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

namespace edgefleet::delta {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TestModel(const std::string& name) {
  std::ifstream in(std::string(EDGEFLEET_TEST_DATA_DIR) + "/" + name, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

TEST(OnnxSignatureTest, ReadsTheGraphsInputsAndOutputsButNotItsWeights) {
  const std::string classifier = TestModel("classifier_v1.onnx");
  ASSERT_FALSE(classifier.empty()) << "run edgefleet_test_models";
  auto signature = ParseOnnxSignature(classifier);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->ir_version, 7);
  ASSERT_EQ(signature->inputs.size(), 1u);
  EXPECT_EQ(signature->inputs[0].name, "input");
  EXPECT_TRUE(signature->inputs[0].has_shape);
  EXPECT_THAT(signature->inputs[0].dims, ElementsAre(1, 4));
  ASSERT_EQ(signature->outputs.size(), 1u);
  EXPECT_EQ(signature->outputs[0].name, "probs");
  EXPECT_THAT(signature->outputs[0].dims, ElementsAre(1, 3));

  auto conv = ParseOnnxSignature(TestModel("conv_v1.onnx"));
  ASSERT_TRUE(conv.ok()) << conv.status();
  EXPECT_THAT(conv->inputs[0].dims, ElementsAre(1, 1, 8, 8));
  // Well-formed even though no runtime can load it: structure is all this checks.
  EXPECT_TRUE(ParseOnnxSignature(TestModel("unloadable.onnx")).ok());
}

TEST(OnnxSignatureTest, RefusesTruncatedGarbageAndGraphlessFilesWithoutReadingOutOfBounds) {
  auto truncated = ParseOnnxSignature(TestModel("broken.onnx"));
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(truncated.status().message()), HasSubstr("not an ONNX model"));
  EXPECT_FALSE(ParseOnnxSignature("").ok());
  EXPECT_FALSE(ParseOnnxSignature("this is a text file\n").ok());
  EXPECT_FALSE(ParseOnnxSignature(std::string("\x08\x07", 2)).ok()) << "ir_version, no graph";
  EXPECT_FALSE(ParseOnnxSignature(std::string("\x3a\x00", 2)).ok()) << "graph, no ir_version";
  EXPECT_FALSE(ParseOnnxSignature(std::string("\x08\x07\x3a\x00", 4)).ok()) << "no outputs";

  const std::string model = TestModel("classifier_v2.onnx");
  for (size_t cut = 0; cut + 1 < model.size(); cut += 7) {
    // Every cut is refused (sanitizer builds also catch a read past it).
    EXPECT_FALSE(ParseOnnxSignature(std::string_view(model.data(), cut)).ok()) << cut;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng() % 256, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    (void)ParseOnnxSignature(junk);  // must return, whatever it says
  }
}

}  // namespace
}  // namespace edgefleet::delta
