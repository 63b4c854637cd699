// The text form of wave sizes, as the CLI's --waves and the server read it.
#include "common/rollout/wave_sizes.h"

#include <gtest/gtest.h>

namespace edgefleet::rollout {
namespace {

TEST(WaveSizesTest, PercentagesAndDeviceCountsInOrder) {
  auto specs = ParseWaveSizes(" 5, 0.25% ,100%");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 3u);
  EXPECT_EQ((*specs)[0].device_count(), 5u);
  EXPECT_EQ((*specs)[0].percent(), 0);
  EXPECT_EQ((*specs)[1].percent(), 0.25);
  EXPECT_EQ((*specs)[2].percent(), 100);
  auto none = ParseWaveSizes("  ");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "no waves: the server's defaults";
}

TEST(WaveSizesTest, ABadItemIsInvalidArgumentNamingIt) {
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"ten%", "waves item 1 'ten%' is not a percentage"},
           {"10%,,100%", "waves item 2 '' is neither a percentage (10%) nor a device count (5)"},
           {"0", "waves item 1 '0' is neither a percentage (10%) nor a device count (5)"},
           {"-3", "waves item 1 '-3' is neither a percentage (10%) nor a device count (5)"},
           {"0%", "waves item 1 '0%' must be above 0%"}}) {
    auto specs = ParseWaveSizes(text);
    ASSERT_FALSE(specs.ok()) << text;
    EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(specs.status().message(), message);
  }
}

}  // namespace
}  // namespace edgefleet::rollout
