// Fixture and builders shared by the store tests: a migrated database per test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "server/store/database.h"
#include "tests/support/test_database.h"

namespace edgefleet::server {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open({.url = pg_.url()});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    ASSERT_TRUE(db_->Migrate().ok());
  }

  test::TestDatabase pg_;
  std::unique_ptr<Database> db_;
};

// A SHA-256-sized digest filled with `c`.
inline std::string Digest(char c) { return std::string(32, c); }

}  // namespace edgefleet::server
