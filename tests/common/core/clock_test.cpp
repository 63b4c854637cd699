#include "common/core/clock.h"

#include <gtest/gtest.h>

#include <limits>

namespace edgefleet {
namespace {

TEST(ClockTest, UnixSecondsRoundTripInRange) {
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(1'800'000'000)), 1'800'000'000);
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(-86'400)), -86'400);
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(kMaxUnixSeconds)), kMaxUnixSeconds);
}

// A signed delegation expiring at unix time -7.5e18 overflowed the nanosecond count (UBSan,
// found by fuzz_manifest; tests/fuzz/regressions/manifest/delegation_expiry_overflows_chrono).
TEST(ClockTest, AbsurdUnixSecondsClampInsteadOfOverflowing) {
  const int64_t huge = std::numeric_limits<int64_t>::max();
  const int64_t tiny = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(huge)), kMaxUnixSeconds);
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(tiny)), -kMaxUnixSeconds);
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(-7'566'047'372'150'900'880)), -kMaxUnixSeconds);
  // Still ordered as they were, and their difference fits.
  const Clock::TimePoint now = FromUnixSeconds(1'800'000'000);
  EXPECT_GT(FromUnixSeconds(huge), now);
  EXPECT_LT(FromUnixSeconds(tiny), now);
  EXPECT_GT(FromUnixSeconds(huge) - FromUnixSeconds(tiny), std::chrono::hours(0));
}

}  // namespace
}  // namespace edgefleet
