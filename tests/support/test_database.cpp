#include "tests/support/test_database.h"

#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>
#include <stdexcept>

namespace edgefleet::test {

namespace {

// Replaces the database name (the URI path) of a postgresql:// URL.
std::string WithDatabase(const std::string& url, const std::string& db) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    // key=value form: a later dbname= overrides an earlier one.
    return url + " dbname=" + db;
  }
  size_t path = url.find('/', scheme + 3);
  size_t query = url.find('?', scheme + 3);
  if (path == std::string::npos || (query != std::string::npos && query < path)) {
    std::string base = query == std::string::npos ? url : url.substr(0, query);
    std::string rest = query == std::string::npos ? "" : url.substr(query);
    return base + "/" + db + rest;
  }
  size_t end = query == std::string::npos ? url.size() : query;
  return url.substr(0, path + 1) + db + url.substr(end);
}

std::string RandomSuffix() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(dist(rd)));
  return buf;
}

}  // namespace

TestDatabase::TestDatabase() {
  const char* env = std::getenv("EDGEFLEET_PG_URL");
  if (env == nullptr || *env == '\0') {
    throw std::runtime_error(
        "EDGEFLEET_PG_URL is not set: run the tests through ./scripts/test.sh, or "
        "`source scripts/lib/postgres.sh; pg_start /tmp/pg` first");
  }
  admin_url_ = env;
  name_ = "ef_test_" + RandomSuffix();
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE DATABASE " + tx.quote_name(name_));
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot create test database " + name_ +
                             " via EDGEFLEET_PG_URL: " + e.what());
  }
  url_ = WithDatabase(admin_url_, name_);
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: could not drop test database %s: %s\n", name_.c_str(), e.what());
  }
}

void TestDatabase::ExecOnServer(const std::string& sql) const {
  pqxx::connection admin(admin_url_);
  pqxx::nontransaction tx(admin);
  tx.exec(sql);
}

void TestDatabase::Exec(const std::string& sql) const {
  pqxx::connection conn(url_);
  pqxx::work tx(conn);
  tx.exec(sql);
  tx.commit();
}

std::string TestDatabase::QueryValue(const std::string& sql) const {
  pqxx::connection conn(url_);
  pqxx::work tx(conn);
  pqxx::result r = tx.exec(sql);
  tx.commit();
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].as<std::string>();
}

}  // namespace edgefleet::test
