#include "common/core/labels.h"

#include <gtest/gtest.h>

#include "common/core/clock.h"

namespace edgefleet {
namespace {

TEST(LabelsTest, ParsesSelectorsAndFormatsInKeyOrder) {
  auto labels = ParseLabelSelector(" site=berlin , hw=jetson-nano,empty= ");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->size(), 3u);
  EXPECT_EQ(labels->at("site"), "berlin");
  EXPECT_EQ(labels->at("empty"), "");
  EXPECT_EQ(FormatLabels(*labels), "empty=,hw=jetson-nano,site=berlin");
  EXPECT_TRUE(ParseLabelSelector("")->empty());
}

TEST(LabelsTest, RefusesMalformedSelectorsWithTheOffendingPart) {
  for (const char* bad : {"site", "=x", "site=ber lin", "a=b,,c=d", "k=v;drop"}) {
    auto parsed = ParseLabelSelector(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseLabelSelector("site").status().message().find("site"), std::string::npos);
}

TEST(LabelsTest, SelectorMatchesWhenEveryPairIsPresent) {
  Labels device{{"site", "berlin"}, {"hw", "nano"}};
  EXPECT_TRUE(SelectorMatches({}, device));
  EXPECT_TRUE(SelectorMatches({{"site", "berlin"}}, device));
  EXPECT_FALSE(SelectorMatches({{"site", "paris"}}, device));
  EXPECT_FALSE(SelectorMatches({{"site", "berlin"}, {"tier", "canary"}}, device));
}

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock clock;
  auto start = clock.Now();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(std::chrono::seconds(90));
  EXPECT_EQ(ToUnixSeconds(clock.Now()) - ToUnixSeconds(start), 90);
}

}  // namespace
}  // namespace edgefleet
