// Fixture and builders shared by the store tests: a migrated database per test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "server/store/database.h"
#include "server/store/model_repo.h"
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

// Registers model version `name` `version` (an ONNX artifact of digest Digest(digest)) under the
// next metadata version, as a push does.
inline void PublishVersion(Database& db, ModelStore& models, const std::string& name,
                           const std::string& version, char digest) {
  v1::ModelVersion mv;
  mv.set_model_name(name);
  mv.set_version(version);
  mv.set_format(v1::MODEL_FORMAT_ONNX);
  mv.set_artifact_sha256(Digest(digest));
  mv.set_size_bytes(10);
  auto next = db.Transact("test", [&](Tx& tx) { return models.NextMetadataVersion(tx); });
  ASSERT_TRUE(next.ok()) << next.status();
  mv.set_metadata_version(*next);
  auto inserted = db.Transact("test", [&](Tx& tx) {
    return models.InsertVersion(tx, mv, "manifest-" + version, "sig", "k1");
  });
  ASSERT_TRUE(inserted.ok()) << inserted;
}

}  // namespace edgefleet::server
