#include "common/core/names.h"

#include <gtest/gtest.h>

#include <string>

namespace edgefleet {
namespace {

TEST(NamesTest, PlainNamesAndVersionsAreAccepted) {
  for (const char* name : {"detector", "a", "cam-v2_int8", "resnet.50"}) {
    EXPECT_TRUE(ValidateModelName(name).ok()) << name;
  }
  for (const char* version : {"1", "1.2.3", "2024-01-05", "1.0+build.7", "RC1"}) {
    EXPECT_TRUE(ValidateVersion(version).ok()) << version;
  }
  EXPECT_TRUE(ValidateModelName(std::string(63, 'm')).ok());
}

TEST(NamesTest, PathLikeHiddenOrOddNamesAreRefused) {
  for (const std::string& name :
       {std::string(), std::string("."), std::string(".."), std::string(".hidden"),
        std::string("a/b"), std::string("Upper"), std::string("with space"), std::string(64, 'm'),
        std::string("nul\0byte", 8), std::string("line\nbreak")}) {
    absl::Status s = ValidateModelName(name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
  }
  for (const std::string& version :
       {std::string(), std::string("."), std::string(".."), std::string(".1"),
        std::string("../escape"), std::string("1/2"), std::string("1 0")}) {
    EXPECT_EQ(ValidateVersion(version).code(), absl::StatusCode::kInvalidArgument) << version;
  }
  EXPECT_NE(ValidateModelName("..").message().find("dot"), std::string::npos);
}

}  // namespace
}  // namespace edgefleet
