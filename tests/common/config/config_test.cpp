#include "common/config/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "edgefleet/v1/config.pb.h"

namespace edgefleet::config {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ConfigTest, FlagsOverrideEnvironmentWhichOverridesFile) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "config_precedence";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "server.json")
      << R"({"dataDir": "/from/file", "deviceListen": "file:1", "checkInIntervalSeconds": 5})";
  v1::ServerConfig config;
  auto status = Load(
      {"--config", (dir / "server.json").string(), "--device-listen=flag:2"},
      FakeEnv({{"EDGEFLEET_DEVICE_LISTEN", "env:3"}, {"EDGEFLEET_LOG_LEVEL", "debug"}}), &config);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(config.data_dir(), "/from/file");
  EXPECT_EQ(config.device_listen(), "flag:2");
  EXPECT_EQ(config.log_level(), "debug");
  EXPECT_EQ(config.check_in_interval_seconds(), 5u);
}

// A list (the agent's server replicas): a JSON array in the file, a comma-separated value in the
// environment or a flag; each later source replaces the list rather than adding to it.
TEST(ConfigTest, ListFieldsTakeCommaSeparatedValuesAndLaterSourcesReplaceThem) {
  auto dir = std::filesystem::path(::testing::TempDir()) / "config_list";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "agent.json") << R"({"serverAddresses": ["a:1", "b:2"]})";
  const std::string file = (dir / "agent.json").string();
  v1::AgentConfig from_file;
  ASSERT_TRUE(Load({"--config", file}, FakeEnv({}), &from_file).ok());
  EXPECT_EQ(std::vector<std::string>(from_file.server_addresses().begin(),
                                     from_file.server_addresses().end()),
            (std::vector<std::string>{"a:1", "b:2"}));
  v1::AgentConfig from_env;
  ASSERT_TRUE(
      Load({"--config", file}, FakeEnv({{"EDGEFLEET_SERVER_ADDRESSES", "c:3, d:4,"}}), &from_env)
          .ok());
  EXPECT_EQ(std::vector<std::string>(from_env.server_addresses().begin(),
                                     from_env.server_addresses().end()),
            (std::vector<std::string>{"c:3", "d:4"}));
  v1::AgentConfig from_flag;
  ASSERT_TRUE(
      Load({"--server-addresses=e:5"}, FakeEnv({{"EDGEFLEET_SERVER_ADDRESSES", "c:3"}}), &from_flag)
          .ok());
  EXPECT_EQ(std::vector<std::string>(from_flag.server_addresses().begin(),
                                     from_flag.server_addresses().end()),
            (std::vector<std::string>{"e:5"}));
  v1::AgentConfig defaults;
  defaults.add_server_addresses("x:1");
  defaults.add_server_addresses("y:2");
  EXPECT_NE(Usage(defaults).find("--server-addresses (EDGEFLEET_SERVER_ADDRESSES)"),
            std::string::npos);
  EXPECT_NE(Usage(defaults).find("(default: x:1,y:2)"), std::string::npos);
}

TEST(ConfigTest, UnknownFlagAndBadNumberAreInvalidArgument) {
  v1::AgentConfig config;
  auto unknown = Load({"--no-such-flag", "1"}, FakeEnv({}), &config);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.message().find("--no-such-flag"), std::string::npos);
  auto bad_number = Load({"--check-in-interval-seconds=soon"}, FakeEnv({}), &config);
  EXPECT_EQ(bad_number.code(), absl::StatusCode::kInvalidArgument);
  auto missing_value = Load({"--state-dir"}, FakeEnv({}), &config);
  EXPECT_EQ(missing_value.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, UnreadableOrMalformedConfigFileIsReported) {
  v1::AgentConfig config;
  EXPECT_EQ(Load({"--config=/nonexistent/agent.json"}, FakeEnv({}), &config).code(),
            absl::StatusCode::kInvalidArgument);
  auto dir = std::filesystem::path(::testing::TempDir()) / "config_malformed";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "agent.json") << R"({"stateDir": )";
  EXPECT_EQ(
      Load({}, FakeEnv({{"EDGEFLEET_CONFIG", (dir / "agent.json").string()}}), &config).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(ConfigTest, UsageListsEveryFlagWithItsVariable) {
  std::string usage = Usage(v1::AgentConfig());
  EXPECT_NE(usage.find("--state-dir (EDGEFLEET_STATE_DIR)"), std::string::npos);
  EXPECT_NE(usage.find("--server-ca-file (EDGEFLEET_SERVER_CA_FILE)"), std::string::npos);
}

// --help describes every setting (from the `help` option in config.proto) and prints the
// defaults it is given.
TEST(ConfigTest, UsageDescribesEveryFieldAndPrintsDefaults) {
  for (const google::protobuf::Descriptor* d :
       {v1::ServerConfig::descriptor(), v1::AgentConfig::descriptor()}) {
    for (int i = 0; i < d->field_count(); ++i) {
      EXPECT_FALSE(d->field(i)->options().GetExtension(v1::help).empty())
          << d->name() << "." << d->field(i)->name() << " needs a (help) option";
    }
  }
  v1::ServerConfig defaults;
  defaults.set_data_dir("/var/lib/edgefleet");
  defaults.set_max_artifact_bytes(2048);
  const std::string usage = Usage(defaults);
  EXPECT_NE(usage.find("--data-dir (EDGEFLEET_DATA_DIR)\n      directory for keys"),
            std::string::npos)
      << usage;
  EXPECT_NE(usage.find("(default: /var/lib/edgefleet)\n"), std::string::npos) << usage;
  EXPECT_NE(usage.find("get 413 (default: 2048)\n"), std::string::npos) << usage;
  EXPECT_EQ(usage.find("--database-url (EDGEFLEET_DATABASE_URL)\n      PostgreSQL connection URL "
                       "(required) (default"),
            std::string::npos)
      << "no default is printed for an unset field\n"
      << usage;
}

}  // namespace
}  // namespace edgefleet::config
