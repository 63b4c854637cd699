// The bounded cache the server's hot paths keep parsed and signed things in: it answers what was
// put, never holds more than its capacity, and is safe to share between threads.
#include "common/core/bounded_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace edgefleet {
namespace {

TEST(BoundedCacheTest, AnswersWhatWasPutAndTheLatestValue) {
  BoundedCache<std::string, int> cache(4);
  EXPECT_FALSE(cache.Find("a").has_value());
  cache.Put("a", 1);
  cache.Put("b", 2);
  cache.Put("a", 3);
  EXPECT_EQ(cache.Find("a"), 3);
  EXPECT_EQ(cache.Find("b"), 2);
}

TEST(BoundedCacheTest, StartsOverWhenFullSoItNeverHoldsMoreThanItsCapacity) {
  BoundedCache<int, int> cache(3);
  for (int i = 0; i < 3; ++i) cache.Put(i, i);
  cache.Put(3, 3);  // full: the three before go
  EXPECT_EQ(cache.Find(3), 3);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(cache.Find(i).has_value()) << i;
}

TEST(BoundedCacheTest, ThreadsShareItSafely) {
  BoundedCache<int, std::string> cache(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const int key = (i * 7 + t) % 100;
        if (auto found = cache.Find(key)) {
          EXPECT_EQ(*found, std::to_string(key));
        } else {
          cache.Put(key, std::to_string(key));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

}  // namespace
}  // namespace edgefleet
