#include "agent/serving/thread_priority.h"

#include <gtest/gtest.h>

#include <thread>

namespace edgefleet::agent {
namespace {

TEST(ThreadPriorityTest, LowersOnlyTheCallingThread) {
  const int before = ThisThreadNice();
  int inside = -100;
  absl::Status status;
  std::thread background([&] {
    status = LowerThisThreadPriority(kMaxNice);
    inside = ThisThreadNice();
  });
  background.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(inside, kMaxNice);
  EXPECT_EQ(ThisThreadNice(), before) << "other threads keep their priority";
}

TEST(ThreadPriorityTest, RefusesValuesOutsideTheRange) {
  EXPECT_EQ(LowerThisThreadPriority(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LowerThisThreadPriority(kMaxNice + 1).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefleet::agent
