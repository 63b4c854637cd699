#include "server/store/database.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "server/store/api_token_repo.h"
#include "server/store/audit_repo.h"
#include "server/store/device_repo.h"
#include "server/store/internal/connection_pool.h"
#include "server/store/internal/transaction.h"
#include "tests/server/store/store_test_util.h"
#include "tests/support/test_database.h"

namespace edgefleet::server {
namespace {

TEST(DatabaseTest, MigrationsApplyToEmptyDatabaseAndAreIdempotent) {
  test::TestDatabase pg;
  auto db = Database::Open({.url = pg.url()});
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(*(*db)->SchemaVersion(), 0);
  ASSERT_GE((*db)->LatestKnownVersion(), 1);

  ASSERT_TRUE((*db)->Migrate().ok());
  EXPECT_EQ(*(*db)->SchemaVersion(), (*db)->LatestKnownVersion());
  EXPECT_EQ(pg.QueryValue("SELECT count(*) FROM schema_migrations"),
            std::to_string(EmbeddedMigrations().size()));
  // The schema is usable: a repository round-trips through it.
  ApiTokenRepo tokens(**db);
  EXPECT_FALSE(*tokens.Any());

  ASSERT_TRUE((*db)->Migrate().ok());
  EXPECT_EQ(*(*db)->SchemaVersion(), (*db)->LatestKnownVersion());
  EXPECT_EQ(pg.QueryValue("SELECT count(*) FROM schema_migrations"),
            std::to_string(EmbeddedMigrations().size()));
}

TEST(DatabaseTest, APreparedStatementIsPlannedOncePerConnection) {
  // The device calls' statements are prepared once per pooled connection; PostgreSQL must then
  // reuse one plan, not plan again on each call (it did for the check-in at 100,000 devices).
  test::TestDatabase pg;
  auto db = Database::Open({.url = pg.url()});
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Migrate().ok());
  auto lease = (*db)->pool().Acquire();
  ASSERT_TRUE(lease.ok()) << lease.status();
  pqxx::nontransaction tx(lease->connection());
  for (int i = 0; i < 10; ++i) {
    internal::ExecPrepared(tx, "plan_probe", "SELECT status FROM devices WHERE id = $1",
                           "cam-" + std::to_string(i));
  }
  pqxx::row plans = tx.exec1(
      "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE name = 'plan_probe'");
  EXPECT_EQ(plans[0].as<int>(), 0) << "custom plans: planned on each call";
  EXPECT_EQ(plans[1].as<int>(), 10);
}

TEST(DatabaseTest, RefusesSchemaNewerThanBinary) {
  test::TestDatabase pg;
  auto db = Database::Open({.url = pg.url()});
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Migrate().ok());
  pg.Exec("INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')");

  absl::Status s = (*db)->Migrate();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "database schema version 999 is newer than this binary (max " +
                             std::to_string((*db)->LatestKnownVersion()) + ")");
}

TEST(DatabaseTest, FailedMigrationLeavesNoTraceAndStopsLaterOnes) {
  test::TestDatabase pg;
  std::vector<Migration> migrations = {
      {1, "first", "CREATE TABLE one (x int)"},
      {2, "broken", "CREATE TABLE two (x int); SELECT no_such_function()"},
      {3, "third", "CREATE TABLE three (x int)"},
  };
  auto db = Database::Open({.url = pg.url()}, migrations);
  ASSERT_TRUE(db.ok()) << db.status();

  absl::Status s = (*db)->Migrate();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("apply migration 2_broken"), absl::string_view::npos) << s;
  EXPECT_EQ(*(*db)->SchemaVersion(), 1);
  EXPECT_EQ(pg.QueryValue("SELECT to_regclass('two') IS NULL"), "t");
  EXPECT_EQ(pg.QueryValue("SELECT to_regclass('three') IS NULL"), "t");
}

TEST(DatabaseTest, OpenOnClosedPortIsUnavailableWithoutPassword) {
  // Bind then close a socket to find a port nobody listens on.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  close(fd);

  const std::string url =
      "postgresql://edgefleet:s3cret@127.0.0.1:" + std::to_string(port) + "/edgefleet";
  auto db = Database::Open({.url = url});
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  const std::string message(db.status().message());
  EXPECT_EQ(message.rfind("database unreachable at postgresql://edgefleet:***@127.0.0.1:", 0), 0u)
      << message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
}

TEST(DatabaseTest, RedactsPasswordsInBothUrlForms) {
  EXPECT_EQ(RedactDatabaseUrl("postgresql://u:pw@h:5432/db"), "postgresql://u:***@h:5432/db");
  EXPECT_EQ(RedactDatabaseUrl("postgresql://u@h/db?password=pw&sslmode=require"),
            "postgresql://u@h/db?password=***&sslmode=require");
  EXPECT_EQ(RedactDatabaseUrl("host=h user=u password=pw dbname=d"),
            "host=h user=u password=*** dbname=d");
  EXPECT_EQ(RedactDatabaseUrl("postgresql://u@h/db"), "postgresql://u@h/db");
}

TEST_F(StoreTest, PoolServesMoreThreadsThanConnections) {
  auto small = Database::Open({.url = pg_.url(), .pool_size = 2});
  ASSERT_TRUE(small.ok()) << small.status();
  AuditRepo audit;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 5; ++j) {
        if (!(*small)
                 ->Transact("ping",
                            [&](Tx& tx) {
                              return audit.Record(tx, "tester", "ping",
                                                  "{\"thread\":" + std::to_string(i) + "}");
                            })
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(pg_.QueryValue("SELECT count(*) FROM audit_log"), "40");
}

TEST_F(StoreTest, PoolReconnectsAfterTheServerDropsItsConnection) {
  auto single = Database::Open({.url = pg_.url(), .pool_size = 1});
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE((*single)->Ping().ok());
  // What a PostgreSQL restart or failover does to an idle pooled connection.
  const std::string killed = pg_.QueryValue(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  ASSERT_GE(std::stoi(killed), 2);  // the single pool's and the fixture's connection
  EXPECT_TRUE((*single)->Ping().ok());
  EXPECT_TRUE(db_->Ping().ok());
}

TEST_F(StoreTest, AnAutocommitReadRetriesOnAFreshConnectionAfterTheServerDropsIt) {
  auto single = Database::Open({.url = pg_.url(), .pool_size = 1});
  ASSERT_TRUE(single.ok()) << single.status();
  DeviceRepo devices(**single);
  ASSERT_TRUE(
      (*single)
          ->Transact("test", [&](Tx& tx) { return devices.Enroll(tx, "cam-1", {}, {}, "0a", 1); })
          .ok());
  ASSERT_TRUE(devices.Identity("cam-1").ok());
  pg_.QueryValue(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  // Device calls read the caller's identity this way: a restarted PostgreSQL must not fail the
  // first call on each pooled connection.
  auto identity = devices.Identity("cam-1");
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->certificate_serial, "0a");
  EXPECT_EQ(devices.Identity("cam-9").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, ApiTokensAreFoundByHashWithTheirRole) {
  ApiTokenRepo tokens(*db_);
  EXPECT_FALSE(*tokens.Any());
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return tokens.Upsert(tx, "ops", "admin", Digest('a')); })
          .ok());
  ASSERT_TRUE(
      db_->Transact("test",
                    [&](Tx& tx) { return tokens.Upsert(tx, "ci", "release-manager", Digest('b')); })
          .ok());
  EXPECT_TRUE(*tokens.Any());

  auto found = tokens.FindByHash(Digest('b'));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->name, "ci");
  EXPECT_EQ(found->role, "release-manager");
  EXPECT_EQ(tokens.FindByHash(Digest('z')).status().code(), absl::StatusCode::kNotFound);

  // Rotating a token replaces the old hash.
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return tokens.Upsert(tx, "ci", "viewer", Digest('c')); })
          .ok());
  EXPECT_EQ(tokens.FindByHash(Digest('b')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tokens.FindByHash(Digest('c'))->role, "viewer");

  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return tokens.Upsert(tx, "x", "root", Digest('d')); })
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return tokens.Upsert(tx, "y", "viewer", Digest('a')); })
          .code(),
      absl::StatusCode::kAlreadyExists);
}

TEST_F(StoreTest, AuditRequiresValidJson) {
  AuditRepo audit;
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return audit.Record(tx, "ops", "device.label",
                                                  R"({"device_id":"cam-1"})");
                            })
                  .ok());
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return audit.Record(tx, "ops", "model.push", ""); })
          .ok());
  EXPECT_EQ(db_->Transact("test", [&](Tx& tx) { return audit.Record(tx, "ops", "x", "{not json"); })
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pg_.QueryValue("SELECT detail->>'device_id' FROM audit_log WHERE action = "
                           "'device.label'"),
            "cam-1");
}

}  // namespace
}  // namespace edgefleet::server
