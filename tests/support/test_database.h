// TestDatabase gives one test its own empty PostgreSQL database on the server named by
// EDGEFLEET_PG_URL (./scripts/test.sh starts one) and drops it afterwards.
#pragma once

#include <string>

namespace edgefleet::test {

class TestDatabase {
 public:
  // Throws std::runtime_error (failing the test with its message) when EDGEFLEET_PG_URL is unset
  // or the database cannot be created.
  TestDatabase();
  ~TestDatabase();

  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // Connection URL of the fresh database.
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // Runs SQL against the fresh database (test setup, e.g. faking a newer schema).
  void Exec(const std::string& sql) const;
  // Runs SQL on the server's maintenance connection (not inside the fresh database), e.g. to
  // cut the fresh database off during a test.
  void ExecOnServer(const std::string& sql) const;
  // Runs a query and returns the first column of its first row as text ("" when no row or NULL).
  std::string QueryValue(const std::string& sql) const;

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

}  // namespace edgefleet::test
