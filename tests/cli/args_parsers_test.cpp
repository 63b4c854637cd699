// Tests of edgefleetctl's command-line syntax: flags, tensor specs and values, durations, digests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/args.h"
#include "cli/parsers.h"
#include "common/crypto/sha256.h"

namespace edgefleet::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ArgsTest, FlagsAnywhereRepeatedAndEqualsForm) {
  auto parsed = ParseArgs({"--server", "h:1", "model", "push", "--label=a=b", "m", "-o", "json",
                           "f.onnx", "--label", "c=d", "--version=3", "-o=table"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positionals, ElementsAre("model", "push", "m", "f.onnx"));
  EXPECT_EQ(parsed->Get("server"), "h:1");
  // "--label=a=b" keeps everything after the first '=' as the value.
  EXPECT_THAT(parsed->GetAll("label"), ElementsAre("a=b", "c=d"));
  EXPECT_EQ(parsed->Get("version"), "3");
  // The last -o wins; -o is not --output (a model push flag).
  EXPECT_THAT(parsed->GetAll("o"), ElementsAre("json", "table"));
  EXPECT_EQ(parsed->Get("o"), "table");
  EXPECT_FALSE(parsed->Has("output"));
  EXPECT_FALSE(parsed->Has("token"));
}

TEST(ArgsTest, DoubleDashEndsFlagsAndValuesMayLookLikeFlags) {
  auto parsed = ParseArgs({"--input", "-x", "a", "--", "--not-a-flag", "-"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Get("input"), "-x");
  EXPECT_THAT(parsed->positionals, ElementsAre("a", "--not-a-flag", "-"));
}

TEST(ArgsTest, BadFlagsAreErrors) {
  EXPECT_THAT(std::string(ParseArgs({"list", "--selector"}).status().message()),
              HasSubstr("needs a value"));
  EXPECT_EQ(ParseArgs({"--help=yes"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseArgs({"-xyz"}).status().code(), absl::StatusCode::kInvalidArgument);
  auto unknown = ParseArgs({"list", "--selectr", "a=b"}, {"help"}, {"selector"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown flag --selectr"));

  auto parsed = ParseArgs({"--remove", "k"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(CheckAllowedFlags(*parsed, {"selector"}).ok());
  EXPECT_TRUE(CheckAllowedFlags(*parsed, {"remove"}).ok());
}

TEST(ParsersTest, TensorSpec) {
  auto spec = ParseTensorSpec("input:1x4");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "input");
  EXPECT_THAT(spec->shape(), ElementsAre(1, 4));
  // Dynamic dimensions and names that contain ':'.
  spec = ParseTensorSpec("images:0:?x3x-1x224");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "images:0");
  EXPECT_THAT(spec->shape(), ElementsAre(-1, 3, -1, 224));
  EXPECT_EQ(FormatShape(spec->shape()), "?x3x?x224");

  for (const char* bad : {"input", ":1x4", "input:", "input:1x", "input:0x4", "input:1xa",
                          "input:-2x4", "input:1,4"}) {
    EXPECT_EQ(ParseTensorSpec(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParsersTest, TensorValue) {
  auto t = ParseTensorValue("x=1x4:0.1,0.2,-3,4e2");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "x");
  EXPECT_THAT(t->shape(), ElementsAre(1, 4));
  EXPECT_THAT(t->data(), ElementsAre(0.1f, 0.2f, -3.0f, 400.0f));

  auto mismatch = ParseTensorValue("x=2x2:1,2,3");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_THAT(std::string(mismatch.status().message()), HasSubstr("needs 4 values, got 3"));
  EXPECT_FALSE(ParseTensorValue("x=1x2:1,2,3").ok());
  EXPECT_FALSE(ParseTensorValue("x=1x2:1,abc").ok());
  EXPECT_FALSE(ParseTensorValue("x=1x2:1,,2").ok());
  EXPECT_FALSE(ParseTensorValue("x=1x-1:1").ok());  // values need a concrete shape
  EXPECT_FALSE(ParseTensorValue("x=0x2:").ok());
  EXPECT_FALSE(ParseTensorValue("x:1x2:1,2").ok());
  EXPECT_FALSE(ParseTensorValue("=1x1:1").ok());
  EXPECT_FALSE(ParseTensorValue("x=100000x100000:1").ok());  // too large, no overflow
}

TEST(ParsersTest, Durations) {
  EXPECT_EQ(ParseDurationSeconds("90").value_or(0), 90u);
  EXPECT_EQ(ParseDurationSeconds("90s").value_or(0), 90u);
  EXPECT_EQ(ParseDurationSeconds("30m").value_or(0), 1800u);
  EXPECT_EQ(ParseDurationSeconds("24h").value_or(0), 86400u);
  EXPECT_EQ(ParseDurationSeconds("7d").value_or(0), 604800u);
  for (const char* bad : {"", "0", "m", "-5", "1.5h", "10w", "5 m", "99999999999999999999d"}) {
    EXPECT_FALSE(ParseDurationSeconds(bad).ok()) << bad;
  }
}

TEST(ParsersTest, Sha256HexAndLabels) {
  const std::string hex(64, 'a');
  auto raw = ParseSha256Hex(hex);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->size(), 32u);
  EXPECT_EQ(crypto::ToHex(*raw), hex);
  EXPECT_FALSE(ParseSha256Hex(std::string(63, 'a')).ok());
  EXPECT_FALSE(ParseSha256Hex(std::string(64, 'g')).ok());

  auto labels = ParseLabelItems({"env=prod", "site=a,rack=3", "env=dev"});
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(labels->at("env"), "dev");
  EXPECT_EQ(labels->at("rack"), "3");
  EXPECT_FALSE(ParseLabelItems({"novalue"}).ok());
  EXPECT_FALSE(ParseLabelItems({"bad key=1"}).ok());
}

}  // namespace
}  // namespace edgefleet::cli
