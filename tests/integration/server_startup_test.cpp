// The server refuses to start, with a clear message and a non-zero exit, when its database is
// unusable: unreachable, or migrated by a newer binary.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;

// A loopback port nothing listens on: bound, read back, then released.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 1;  // port 1 is never a PostgreSQL server in a test environment
  }
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

using ServerStartupTest = IntegrationTest;

TEST_F(ServerStartupTest, RefusesToStartWhenTheDatabaseIsUnreachable) {
  ServerHarness server(BinDir(), tmp_.Sub("unreachable"),
                       "postgresql://postgres@127.0.0.1:" + std::to_string(ClosedPort()) +
                           "/edgefleet?connect_timeout=5");
  ASSERT_FALSE(server.TryStart(0, 60s)) << "the server must not listen without its database";
  std::optional<int> code = server.ExitCode(30s);
  ASSERT_TRUE(code.has_value()) << "the server should exit, not hang";
  EXPECT_NE(*code, 0);
  EXPECT_THAT(server.LogText(), HasSubstr("cannot start")) << server.LogText();
  EXPECT_THAT(server.LogText(), ::testing::ContainsRegex("[Dd]atabase|connect|127\\.0\\.0\\.1"))
      << "the message should say what could not be reached:\n"
      << server.LogText();
}

TEST_F(ServerStartupTest, RefusesToStartOnASchemaNewerThanTheBinary) {
  server_->Start();
  ASSERT_EQ(server_->Stop(), 0);
  db_->Exec("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')");

  ASSERT_FALSE(server_->TryStart(0, 60s)) << "the server must not run against a newer schema";
  std::optional<int> code = server_->ExitCode(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_THAT(server_->LogText(), HasSubstr("newer than this binary")) << server_->LogText();
  EXPECT_THAT(server_->LogText(), HasSubstr("9999"));
}

}  // namespace
}  // namespace edgefleet::test
