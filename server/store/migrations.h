// The SQL migrations compiled into the binary from migrations/NNNN_name.sql.
#pragma once

#include <string>
#include <vector>

namespace edgefleet::server {

struct Migration {
  int version = 0;
  std::string name;
  std::string sql;
};

// Ordered by version (file names sort by their zero-padded number).
const std::vector<Migration>& EmbeddedMigrations();

}  // namespace edgefleet::server
