// The integration harness's own building blocks: child processes end the way tests rely on,
// and the metrics/ports/expected-output parsers read what the server and make_models.py write.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/support/fleet_harness.h"
#include "tests/support/process.h"

namespace edgefleet::test {
namespace {

using namespace std::chrono_literals;

TEST(ProcessTest, ReportsExitCodeAndCapturesOutput) {
  TempDir tmp;
  Process p;
  p.Spawn("/bin/sh", {"-c", "echo hello-from-child; echo \"var=$EXTRA\"; exit 3"},
          {{"EXTRA", "set"}}, tmp.Sub("log"));
  EXPECT_EQ(p.Wait(10s), 3);
  EXPECT_FALSE(p.IsRunning());
  std::string log = ReadFile(tmp.Sub("log")).value_or("");
  EXPECT_THAT(log, ::testing::HasSubstr("hello-from-child"));
  EXPECT_THAT(log, ::testing::HasSubstr("var=set"));
}

TEST(ProcessTest, HidesTheCallersEdgefleetEnvironment) {
  TempDir tmp;
  ::setenv("EDGEFLEET_DATABASE_URL", "postgresql://should-not-leak", 1);
  Process p;
  p.Spawn("/bin/sh", {"-c", "echo \"url=${EDGEFLEET_DATABASE_URL:-unset}\""}, {}, tmp.Sub("log"));
  EXPECT_EQ(p.Wait(10s), 0);
  ::unsetenv("EDGEFLEET_DATABASE_URL");
  EXPECT_THAT(ReadFile(tmp.Sub("log")).value_or(""), ::testing::HasSubstr("url=unset"));
}

TEST(ProcessTest, TerminateStopsAndKillEndsAStubbornChild) {
  Process polite;
  polite.Spawn("/bin/sleep", {"30"});
  EXPECT_TRUE(polite.IsRunning());
  EXPECT_EQ(polite.Terminate(5s), 128 + SIGTERM);

  TempDir tmp;
  const std::string ready = tmp.Sub("ready");
  Process stubborn;
  // One process that ignores SIGTERM (a shell loop's children would still die of it).
  stubborn.Spawn(
      "/usr/bin/python3",
      {"-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('" + ready +
                 "', 'w').close(); time.sleep(60)"});
  // Only once the trap is installed does SIGTERM go unanswered.
  ASSERT_TRUE(WaitFor([&] { return ReadFile(ready).has_value(); }, 10s));
  EXPECT_EQ(stubborn.Terminate(200ms), 128 + SIGKILL) << "SIGKILL after the grace period";
  EXPECT_FALSE(stubborn.IsRunning());
}

TEST(ProcessTest, SpawnThrowsWhenTheBinaryCannotRun) {
  Process p;
  EXPECT_THROW(p.Spawn("/nonexistent/edgefleet-server", {}), std::runtime_error);
  EXPECT_FALSE(p.IsRunning());
}

TEST(HarnessParsersTest, ReadsPortsFileOnlyWhenComplete) {
  TempDir tmp;
  EXPECT_FALSE(ReadPortsFile(tmp.Sub("ports.json")));
  std::ofstream(tmp.Sub("ports.json")) << R"({"device": 4100, "admin_grpc": 4101})";
  EXPECT_FALSE(ReadPortsFile(tmp.Sub("ports.json"))) << "admin_http missing";
  std::ofstream(tmp.Sub("ports.json"))
      << R"({"device": 4100, "admin_grpc": 4101, "admin_http": 4102})";
  auto ports = ReadPortsFile(tmp.Sub("ports.json"));
  ASSERT_TRUE(ports);
  EXPECT_EQ(ports->device, 4100);
  EXPECT_EQ(ports->admin_grpc, 4101);
  EXPECT_EQ(ports->admin_http, 4102);
}

TEST(HarnessParsersTest, MetricValueMatchesNameAndLabelsExactly) {
  const std::string text =
      "# HELP edgefleet_devices Registered devices by status\n"
      "# TYPE edgefleet_devices gauge\n"
      "edgefleet_devices{status=\"active\"} 2\n"
      "edgefleet_devices{status=\"pending\"} 1\n"
      "edgefleet_devices_extra{status=\"active\"} 40\n"
      "edgefleet_grpc_requests_total{service=\"DeviceService\",method=\"CheckIn\",code=\"OK\"} 5\n"
      "edgefleet_grpc_requests_total{service=\"DeviceService\",method=\"CheckIn\",code="
      "\"PERMISSION_DENIED\"} 3\n"
      "edgefleet_device_check_ins_total 7\n";
  EXPECT_EQ(MetricValue(text, "edgefleet_devices", {{"status", "active"}}), 2);
  EXPECT_EQ(MetricValue(text, "edgefleet_devices"), 3) << "sums every series";
  EXPECT_EQ(MetricValue(text, "edgefleet_grpc_requests_total", {{"code", "PERMISSION_DENIED"}}), 3);
  EXPECT_EQ(MetricValue(text, "edgefleet_device_check_ins_total"), 7);
  EXPECT_FALSE(MetricValue(text, "edgefleet_devices", {{"status", "gone"}}));
  EXPECT_FALSE(MetricValue(text, "edgefleet_device"));
}

TEST(HarnessParsersTest, LoadsExpectedModelOutputs) {
  TempDir tmp;
  std::ofstream(tmp.Sub("expected.txt")) << "m.onnx input input 1,4 0.5 -1.2 3.3 0.7\n"
                                            "m.onnx output probs 1,3 0.25 0.25 0.5\n";
  auto models = LoadExpectedModels(tmp.Sub("expected.txt"));
  ASSERT_EQ(models.count("m.onnx"), 1u);
  const auto& m = models.at("m.onnx");
  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].shape_size(), 2);
  EXPECT_FLOAT_EQ(m.inputs[0].data(1), -1.2f);
  ASSERT_EQ(m.outputs.size(), 1u);
  v1::Tensor close = m.outputs[0];
  close.set_data(2, 0.50001f);
  EXPECT_NEAR(MaxAbsDifference(close, m.outputs[0]), 1e-5, 1e-6);
  close.set_name("other");
  EXPECT_TRUE(std::isinf(MaxAbsDifference(close, m.outputs[0])));
}

}  // namespace
}  // namespace edgefleet::test
