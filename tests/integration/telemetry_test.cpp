// Field telemetry end to end: a real agent cuts a window per serving version every interval,
// keeps them in its outbox while the server is away (stopped, or the agent killed mid-upload),
// and every window reaches PostgreSQL exactly once: the stored windows of its stream tile time
// with no gap and no repeat.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "agent/state/state_store.h"
#include "tests/integration/integration_fixture.h"
#include "tests/support/telemetry_windows.h"

namespace edgefleet::test {
namespace {

class TelemetryTest : public IntegrationTest {
 protected:
  AgentHarness& StartAgentOnV1(std::vector<std::string> extra_args = {}) {
    server_->Start();
    AgentHarness& agent = AddAgent("cam-1");
    agent.set_extra_args(std::move(extra_args));
    // The harness's agents cut a telemetry window every second.
    agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
    EXPECT_TRUE(WaitForActiveDevices(1));
    PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
    EXPECT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
    return agent;
  }

  std::string Query(const std::string& sql) { return db_->QueryValue(sql); }

  // Windows of classifier v1 whose end no stored window starts at, the newest aside: a gap.
  std::string Gaps() {
    return Query(
        "SELECT count(*) FROM telemetry_windows w WHERE w.model_name = 'classifier' AND "
        "w.window_end < (SELECT max(window_end) FROM telemetry_windows) AND NOT EXISTS ("
        "SELECT 1 FROM telemetry_windows n WHERE n.device_id = w.device_id AND "
        "n.stream_id = w.stream_id AND n.model_name = w.model_name AND "
        "n.window_start = w.window_end)");
  }

  // Waits until the server holds windows ending after `t` (unix seconds).
  bool WaitForWindowsAfter(int64_t t) {
    return WaitFor(
        [&] {
          return Query("SELECT count(*) FROM telemetry_windows WHERE window_end > to_timestamp(" +
                       std::to_string(t) + ")") != "0";
        },
        kLongWait, std::chrono::milliseconds(200));
  }

  static int64_t NowUnix() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

TEST_F(TelemetryTest, WindowsCutWhileTheServerIsAwayArriveOnceWhenItIsBack) {
  AgentHarness& agent = StartAgentOnV1();
  ASSERT_FALSE(HasFatalFailure());
  for (int i = 0; i < 5; ++i) {
    v1::PredictResponse response;
    ASSERT_TRUE(PredictSample(agent, "classifier", &response).ok());
  }
  ASSERT_TRUE(WaitForWindowsAfter(NowUnix()));
  const int64_t offline_from = NowUnix();
  server_->Stop();
  // The offline time itself, not an ordering wait: the agent cuts a window a second meanwhile.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  const int64_t offline_to = NowUnix();
  server_->Start(server_->ports().device);
  ASSERT_TRUE(WaitForWindowsAfter(offline_to + 1));

  EXPECT_EQ(Gaps(), "0") << "every window cut arrived";
  EXPECT_EQ(Query("SELECT count(DISTINCT stream_id) FROM telemetry_windows"), "1");
  // Windows cut while the server was down were stored later, from the outbox.
  EXPECT_GE(std::stoi(Query("SELECT count(*) FROM telemetry_windows WHERE window_end > "
                            "to_timestamp(" +
                            std::to_string(offline_from + 1) + ") AND window_end < to_timestamp(" +
                            std::to_string(offline_to) +
                            ") AND received_at > window_end + interval '1 second'")),
            2);
  // The requests of the first windows are counted once, in the version's windows.
  EXPECT_GE(std::stoi(Query("SELECT sum(request_count) FROM telemetry_windows")), 5);
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_windows WHERE hw <> '' OR version <> '1'"), "0");
  EXPECT_GE(
      MetricValue(server_->Metrics(), "edgefleet_telemetry_windows_total", {{"result", "stored"}})
          .value_or(0),
      5);
}

TEST_F(TelemetryTest, AnAgentKilledAndRestartedLosesNoWindowAndRepeatsNone) {
  AgentHarness& agent = StartAgentOnV1();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForWindowsAfter(NowUnix()));
  // Killed at whatever point its upload loop is: the outbox holds what was not answered.
  agent.Kill();
  agent.Restart();
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  const int64_t restarted = NowUnix();
  ASSERT_TRUE(WaitForWindowsAfter(restarted + 2));
  // The killed run's stream and the restarted one's are the same stream (its database); the
  // time the agent was down is the one gap a kill may leave: windows tile time before and after.
  EXPECT_EQ(Query("SELECT count(DISTINCT stream_id) FROM telemetry_windows"), "1");
  EXPECT_LE(std::stoi(Gaps()), 1) << "at most the time the agent was down";
  EXPECT_EQ(Query("SELECT count(*) FROM (SELECT sequence FROM telemetry_windows "
                  "GROUP BY sequence HAVING count(*) > 1) d"),
            "0");
}

TEST_F(TelemetryTest, AFullOutboxDropsTheOldestWindowsAndTheServerCountsWhatWasLost) {
  AgentHarness& agent = StartAgentOnV1({"--outbox-max-mib", "1"});
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForWindowsAfter(NowUnix()));
  server_->Stop();
  ASSERT_TRUE(agent.Stop().has_value());
  // What days offline leave behind: an outbox just under a 1 MiB budget of windows the server
  // will take, and, newest, two it will refuse (a model the device does not run).
  using agent::StateStore;
  const std::string db_path = agent.state_dir() + "/agent.db";
  {
    auto state = StateStore::Open(db_path, {.outbox_max_bytes = uint64_t{1} << 20});
    ASSERT_TRUE(state.ok()) << state.status();
    std::mt19937_64 rng(11);
    const int64_t start = NowUnix() - 4 * 3600;
    const WindowShape shape{.features = 16, .classes = 3, .requests = 600};
    std::vector<std::string> ghosts;
    // What the agent left in its outbox (windows cut after the server stopped) counts too.
    auto before = (*state)->OutboxStats();
    ASSERT_TRUE(before.ok());
    uint64_t bytes = 0;
    for (const auto& kind : *before) bytes += kind.bytes;
    for (int i = 0; i < 2; ++i) {
      ghosts.push_back(MakeTelemetryWindow(rng, shape, "ghost", "1", start, 1).SerializeAsString());
      bytes += ghosts.back().size();
    }
    // Filled to within a few bytes of the budget, so the first windows the agent cuts overflow it.
    for (int i = 0;; ++i) {
      const std::string payload =
          MakeTelemetryWindow(rng, shape, "classifier", "1", start + i, 1).SerializeAsString();
      if (bytes + payload.size() > (uint64_t{1} << 20) - 16) break;
      ASSERT_TRUE((*state)->Enqueue(StateStore::OutboxKind::kTelemetry, payload).ok());
      bytes += payload.size();
    }
    for (const std::string& ghost : ghosts) {
      ASSERT_TRUE((*state)->Enqueue(StateStore::OutboxKind::kTelemetry, ghost).ok());
    }
    auto stats = (*state)->OutboxStats();
    ASSERT_TRUE(stats.ok());
    ASSERT_EQ((*stats)[static_cast<size_t>(StateStore::OutboxKind::kTelemetry)].dropped, 0u);
  }
  // Back up (its budget is 1 MiB) with no server: each window it cuts pushes out the oldest.
  agent.Restart();
  uint64_t dropped = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto state = StateStore::Open(db_path, {.outbox_max_bytes = uint64_t{1} << 20});
        if (!state.ok()) return false;
        auto stats = (*state)->OutboxStats();
        if (!stats.ok()) return false;
        dropped = (*stats)[static_cast<size_t>(StateStore::OutboxKind::kTelemetry)].dropped;
        return dropped >= 3;
      },
      kLongWait, std::chrono::milliseconds(200)));

  server_->Start(server_->ports().device);
  // The refusals happen on the way: the two refused windows are counted as well.
  double outbox_full = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string metrics = server_->Metrics();
        outbox_full = MetricValue(metrics, "edgefleet_telemetry_windows_dropped_total",
                                  {{"reason", "outbox_full"}})
                          .value_or(0);
        return outbox_full >= static_cast<double>(dropped) &&
               MetricValue(metrics, "edgefleet_telemetry_windows_dropped_total",
                           {{"reason", "refused"}})
                       .value_or(0) == 2;
      },
      kLongWait, std::chrono::milliseconds(200)))
      << server_->Metrics();
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_windows WHERE model_name = 'ghost'"), "0");
  // The operator sees it on the device.
  v1::Device device;
  ASSERT_TRUE(server_->GetDevice("cam-1", &device).ok());
  EXPECT_GE(device.telemetry_dropped().outbox_full(), dropped);
  EXPECT_EQ(device.telemetry_dropped().refused(), 2u);
  CommandResult shown = server_->Ctl({"device", "get", "cam-1"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("Telemetry dropped"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("refused 2)"), std::string::npos) << shown.out;
}

}  // namespace
}  // namespace edgefleet::test
