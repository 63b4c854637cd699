// Every list call pages with one rule and one token, and paging through more rows than a page
// while rows are inserted between pages yields each row present at the start exactly once.
#include "server/store/paging.h"

#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "server/store/api_token_repo.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/enrollment_token_repo.h"
#include "server/store/model_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;

TEST(PageRequestTest, PageSizeHasADefaultAndALimit) {
  auto page = ReadPageRequest("ListDevices", 0, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->size, kDefaultPageSize);
  EXPECT_EQ(page->after, "");
  EXPECT_EQ(ReadPageRequest("ListDevices", kMaxPageSize, "")->size, kMaxPageSize);
  absl::Status over = ReadPageRequest("ListDevices", kMaxPageSize + 1, "").status();
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(over.message(), "page_size 1001 is over the limit of 1000");
}

TEST(PageRequestTest, TokensAreOpaqueRoundTripAndBelongToOneCall) {
  const std::string token = NextPageToken("ListDevices", "cam-7");
  EXPECT_EQ(token.find("cam-7"), std::string::npos) << "opaque";
  EXPECT_EQ(ReadPageRequest("ListDevices", 5, token)->after, "cam-7");
  EXPECT_EQ(NextPageToken("ListDevices", ""), "") << "the last page has no next token";
  for (const std::string& bad :
       {std::string("garbage!"), std::string("Y2FtLTc"), NextPageToken("ListModels", "cam-7")}) {
    absl::Status s = ReadPageRequest("ListDevices", 5, bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message(), "page_token is not a page token of ListDevices");
  }
}

std::string Name(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s-%03d", prefix, i);
  return buf;
}

class PagingTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    devices_ = std::make_unique<DeviceRepo>(*db_);
    models_ = std::make_unique<ModelRepo>(*db_);
    deployments_ = std::make_unique<DeploymentRepo>(*db_);
    api_tokens_ = std::make_unique<ApiTokenRepo>(*db_);
    enrollment_tokens_ = std::make_unique<EnrollmentTokenRepo>(*db_);
  }

  void CreateApiToken(const std::string& name) {
    ApiTokenRecord record;
    record.name = name;
    record.role = "viewer";
    auto stored = db_->Transact(
        "test", [&](Tx& tx) { return api_tokens_->Insert(tx, record, "hash-" + name); });
    ASSERT_TRUE(stored.ok()) << stored.status();
  }

  void CreateEnrollmentToken(const std::string& id) {
    auto stored = db_->Transact("test", [&](Tx& tx) {
      return enrollment_tokens_->Create(tx, id, "hash-" + id, 1, kNow, {}, "");
    });
    ASSERT_TRUE(stored.ok()) << stored.status();
  }

  void Publish(const std::string& name, const std::string& version) {
    v1::ModelVersion mv;
    mv.set_model_name(name);
    mv.set_version(version);
    mv.set_format(v1::MODEL_FORMAT_ONNX);
    mv.set_artifact_sha256(Digest('a'));
    mv.set_size_bytes(10);
    mv.set_metadata_version(
        *db_->Transact("test", [&](Tx& tx) { return models_->NextMetadataVersion(tx); }));
    ASSERT_TRUE(
        db_->Transact("test", [&](Tx& tx) { return models_->InsertVersion(tx, mv, "", "", ""); })
            .ok());
  }

  // Follows pages of `size` until the last, calling `between(page_number)` after each page;
  // returns every key seen, in order.
  template <typename T, typename Fetch, typename Key>
  std::vector<std::string> PageThrough(size_t size, Fetch fetch, Key key,
                                       const std::function<void(int)>& between) {
    std::vector<std::string> seen;
    PageRequest page{"", size};
    for (int n = 0; n < 1000; ++n) {
      absl::StatusOr<Page<T>> got = fetch(page);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) break;
      EXPECT_LE(got->items.size(), size);
      for (const T& item : got->items) seen.push_back(key(item));
      if (got->next_after.empty()) break;
      EXPECT_EQ(got->next_after, seen.back());
      page.after = got->next_after;
      between(n);
    }
    return seen;
  }

  static void ExpectEachOnceInOrder(const std::vector<std::string>& seen,
                                    const std::vector<std::string>& must_see) {
    EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size())
        << "no duplicates";
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    for (const std::string& id : must_see) {
      EXPECT_EQ(std::count(seen.begin(), seen.end(), id), 1) << id << ": no gaps";
    }
  }

  // Creates rows "row-000", "row-002", ... then pages through them 4 at a time, creating rows
  // behind the cursor (odd numbers: need not be seen) and ahead of it ("zz-N": must be seen)
  // between pages. Rows present at the start and rows created ahead are each seen once.
  template <typename T, typename Fetch, typename Key>
  void ExpectPagesWhileCreating(const std::function<void(const std::string&)>& create, Fetch fetch,
                                Key key) {
    std::vector<std::string> at_start;
    for (int i = 0; i < 30; i += 2) {
      at_start.push_back(Name("row", i));
      create(at_start.back());
    }
    int odd = 1;
    std::vector<std::string> ahead;
    auto seen = PageThrough<T>(4, fetch, key, [&](int n) {
      for (int k = 0; k < 3 && odd < 30; ++k, odd += 2) create(Name("row", odd));
      ahead.push_back(Name("zz", n));
      create(ahead.back());
    });
    ExpectEachOnceInOrder(seen, at_start);
    ExpectEachOnceInOrder(seen, ahead);
  }

  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
  std::unique_ptr<ApiTokenRepo> api_tokens_;
  std::unique_ptr<EnrollmentTokenRepo> enrollment_tokens_;
};

TEST_F(PagingTest, DevicePagesHaveNoDuplicatesOrGapsWhileDevicesEnroll) {
  std::vector<std::string> at_start;
  for (int i = 0; i < 50; i += 2) {  // even numbers now, odd ones while paging
    at_start.push_back(Name("cam", i));
    ASSERT_TRUE(
        db_->Transact(
               "test",
               [&](Tx& tx) {
                 return devices_->Enroll(tx, at_start.back(), {{"site", "a"}}, {}, "1", kNow);
               })
            .ok());
  }
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return devices_->Enroll(tx, "other", {{"site", "b"}}, {}, "1", kNow);
                            })
                  .ok());
  int odd = 1;
  std::vector<std::string> ahead;
  auto seen = PageThrough<v1::Device>(
      7,
      [&](const PageRequest& p) {
        return devices_->ListPage({{"site", "a"}}, p);
      },
      [](const v1::Device& d) { return d.device_id(); },
      [&](int n) {
        // Behind the cursor (not seen this time) and ahead of it (seen).
        for (int k = 0; k < 3 && odd < 50; ++k, odd += 2) {
          ASSERT_TRUE(db_->Transact("test",
                                    [&](Tx& tx) {
                                      return devices_->Enroll(tx, Name("cam", odd), {{"site", "a"}},
                                                              {}, "1", kNow);
                                    })
                          .ok());
        }
        ahead.push_back(Name("zz", n));
        ASSERT_TRUE(
            db_->Transact(
                   "test",
                   [&](Tx& tx) {
                     return devices_->Enroll(tx, ahead.back(), {{"site", "a"}}, {}, "1", kNow);
                   })
                .ok());
      });
  ExpectEachOnceInOrder(seen, at_start);
  ExpectEachOnceInOrder(seen, ahead);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "other"), 0) << "the selector holds";
}

TEST_F(PagingTest, ModelPagesHaveNoDuplicatesOrGapsWhileModelsArePushed) {
  std::vector<std::string> at_start;
  for (int i = 0; i < 23; i += 2) {
    at_start.push_back(Name("m", i));
    Publish(at_start.back(), "1");
    Publish(at_start.back(), "2");
  }
  int odd = 1;
  auto seen = PageThrough<v1::Model>(
      5, [&](const PageRequest& p) { return models_->ListModelsPage(p); },
      [](const v1::Model& m) {
        EXPECT_EQ(m.versions_size(), m.name() < "m-023" && m.name()[4] % 2 == 0 ? 2 : 1)
            << m.name() << " comes with its versions";
        return m.name();
      },
      [&](int) {
        for (int k = 0; k < 2 && odd < 23; ++k, odd += 2) Publish(Name("m", odd), "1");
      });
  ExpectEachOnceInOrder(seen, at_start);
}

TEST_F(PagingTest, DeploymentPagesHaveNoDuplicatesOrGapsWhileDeploymentsAreCreated) {
  ASSERT_TRUE(
      db_->Transact("test",
                    [&](Tx& tx) { return devices_->Enroll(tx, "cam-1", {}, {}, "1", kNow); })
          .ok());
  Publish("detector", "1");
  std::vector<std::string> at_start;
  for (int i = 0; i < 12; ++i) {
    auto d = db_->Transact("test", [&](Tx& tx) {
      return deployments_->Create(tx, "detector", "1", "", {}, kNow + i);
    });
    ASSERT_TRUE(d.ok()) << d.status();
    at_start.push_back(d->deployment_id());
  }
  std::vector<int64_t> seen_ids;
  auto seen = PageThrough<v1::Deployment>(
      5, [&](const PageRequest& p) { return deployments_->ListPage(p); },
      [&](const v1::Deployment& d) {
        EXPECT_EQ(d.target_count(), 1u) << "each deployment comes with its target counts";
        EXPECT_EQ(d.targets_size(), 0) << "but not its targets";
        seen_ids.push_back(std::stoll(d.deployment_id()));
        return d.deployment_id();
      },
      [&](int) {
        ASSERT_TRUE(db_->Transact("test",
                                  [&](Tx& tx) {
                                    return deployments_->Create(tx, "detector", "1", "", {},
                                                                kNow + 99);
                                  })
                        .ok());
      });
  // Ids are numbers: ordered numerically, not as text.
  EXPECT_TRUE(std::is_sorted(seen_ids.begin(), seen_ids.end()));
  EXPECT_EQ(std::set<int64_t>(seen_ids.begin(), seen_ids.end()).size(), seen_ids.size());
  for (const std::string& id : at_start) {
    EXPECT_EQ(std::count(seen.begin(), seen.end(), id), 1) << id;
  }
  EXPECT_EQ(deployments_->ListPage({"not-a-number", 5}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PagingTest, ApiTokenPagesHaveNoDuplicatesOrGapsWhileTokensAreCreated) {
  ExpectPagesWhileCreating<ApiTokenRecord>(
      [&](const std::string& name) { CreateApiToken(name); },
      [&](const PageRequest& p) { return api_tokens_->ListPage(p); },
      [](const ApiTokenRecord& r) {
        EXPECT_EQ(r.role, "viewer") << r.name << " comes whole";
        return r.name;
      });
}

TEST_F(PagingTest, EnrollmentTokenPagesHaveNoDuplicatesOrGapsWhileTokensAreCreated) {
  ExpectPagesWhileCreating<v1::EnrollmentToken>(
      [&](const std::string& id) { CreateEnrollmentToken(id); },
      [&](const PageRequest& p) { return enrollment_tokens_->ListPage(p); },
      [](const v1::EnrollmentToken& t) {
        EXPECT_EQ(t.max_uses(), 1u) << t.token_id() << " comes whole";
        EXPECT_TRUE(t.token().empty()) << "never the secret";
        return t.token_id();
      });
}

}  // namespace
}  // namespace edgefleet::server
