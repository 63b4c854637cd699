#include "server/store/enrollment_token_repo.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;

TEST_F(StoreTest, EnrollmentTokenGrantsLabelsUntilItsUsesRunOut) {
  EnrollmentTokenRepo repo(*db_);
  auto created = db_->Transact("test", [&](Tx& tx) {
    return repo.Create(tx, "tok-1", Digest('1'), 2, kNow + 3600, {{"site", "berlin"}},
                       "line 3 cameras");
  });
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->token_id(), "tok-1");
  EXPECT_TRUE(created->token().empty());
  EXPECT_EQ(created->max_uses(), 2u);
  EXPECT_EQ(created->expires_at().seconds(), kNow + 3600);

  for (int i = 0; i < 2; ++i) {
    auto labels =
        db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('1'), kNow); });
    ASSERT_TRUE(labels.ok()) << labels.status();
    EXPECT_EQ(*labels, (Labels{{"site", "berlin"}}));
  }
  absl::Status third =
      db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('1'), kNow); }).status();
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(third.message(), "enrollment token has no uses left");

  EXPECT_EQ(
      db_->Transact("test",
                    [&](Tx& tx) { return repo.Create(tx, "tok-1", Digest('2'), 1, kNow, {}, ""); })
          .status()
          .code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      db_->Transact("test",
                    [&](Tx& tx) { return repo.Create(tx, "tok-3", Digest('3'), 0, kNow, {}, ""); })
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, ExpiredAndUnknownEnrollmentTokensGiveDistinctErrors) {
  EnrollmentTokenRepo repo(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Create(tx, "tok-1", Digest('1'), 5, kNow + 60, {}, "");
                            })
                  .ok());

  absl::Status expired =
      db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('1'), kNow + 60); })
          .status();
  EXPECT_EQ(expired.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(expired.message(), "enrollment token expired");

  absl::Status unknown =
      db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('9'), kNow); }).status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(unknown.message(), "unknown enrollment token");

  // An expired attempt did not use the token up.
  EXPECT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('1'), kNow + 59); }).ok());
}

TEST_F(StoreTest, SingleUseTokenConsumedConcurrentlySucceedsExactlyOnce) {
  EnrollmentTokenRepo repo(*db_);
  ASSERT_TRUE(
      db_->Transact(
             "test",
             [&](Tx& tx) {
               return repo.Create(tx, "once", Digest('o'), 1, kNow + 60, {{"tier", "edge"}}, "");
             })
          .ok());

  constexpr int kThreads = 8;
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      auto r = db_->Transact("test", [&](Tx& tx) { return repo.Consume(tx, Digest('o'), kNow); });
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kResourceExhausted) {
        ++exhausted;
      } else {
        ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(exhausted.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(pg_.QueryValue("SELECT uses FROM enrollment_tokens WHERE id = 'once'"), "1");
}

}  // namespace
}  // namespace edgefleet::server
