// edgefleet-bench-rollback: the time from a rollout's gate failing to every device of its wave
// serving the previous version again, with a real edgefleet-server and real edgefleet-agents on
// loopback (the integration tests' harness), measured in check-in intervals.
//
// The story: N agents serve classifier v1. Version 2 (classifier_nan.onnx) passes warm-up but
// answers NaN for real inputs. A rollout sends it to a first wave of K devices with
// --on-failure rollback. Half the agents get Predict traffic: those in the wave fail probation
// and swap back by themselves; those without traffic commit v2. The probation gate then fails
// (the decision is the ROLLED_BACK event, with its server timestamp), the devices on v2 are
// re-targeted to v1 and swap back to the copy they kept. The clock runs from that event to the
// moment the last agent's local API lists v1 as serving (ListModels, which is not inference and
// so does not count as probation traffic).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "edgefleet/v1/admin.grpc.pb.h"
#include "tests/support/fleet_harness.h"
#include "tests/support/process.h"
#include "tests/support/test_database.h"

namespace {

using namespace std::chrono_literals;
using edgefleet::test::AgentHarness;
using edgefleet::test::ServerHarness;
using SysClock = std::chrono::system_clock;
namespace v1 = edgefleet::v1;

constexpr const char* kUsage =
    R"(usage: edgefleet-bench-rollback [flags]   (needs EDGEFLEET_PG_URL: a database is created and dropped)
  --agents N               agents on loopback (default 8)
  --wave-devices K         devices in the rollout's first wave (default 6)
  --check-in-seconds S     check-in interval of server and agents (default 5)
  --rollout-interval-ms MS the rollout controller's evaluation interval (default 5000, the server's)
  --bin-dir DIR            edgefleet-server and edgefleet-agent (default build/bin)
  --models DIR             make_models.py's output (default build/testdata)
  --json FILE              also write the result as JSON
)";

struct Options {
  int agents = 8;
  int wave_devices = 6;
  int check_in_seconds = 5;
  int rollout_interval_ms = 5000;
  std::string bin_dir = "build/bin";
  std::string models = "build/testdata";
  std::string json;
};

double Seconds(SysClock::duration d) { return std::chrono::duration<double>(d).count(); }

SysClock::time_point FromTimestamp(const google::protobuf::Timestamp& t) {
  return SysClock::time_point(std::chrono::duration_cast<SysClock::duration>(
      std::chrono::seconds(t.seconds()) + std::chrono::nanoseconds(t.nanos())));
}

// The version an agent's local API lists as serving for the classifier ("" when none or down).
std::string ListedVersion(v1::InferenceService::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(SysClock::now() + 2s);
  v1::ListLocalModelsResponse response;
  if (!stub.ListModels(&context, v1::ListLocalModelsRequest(), &response).ok()) return "";
  for (const auto& m : response.models()) {
    if (m.model_name() == "classifier") return m.version();
  }
  return "";
}

// Every change of every agent's listed version, with its time.
class VersionWatch {
 public:
  explicit VersionWatch(const std::vector<std::unique_ptr<AgentHarness>>& agents) {
    for (const auto& a : agents) stubs_.push_back(a->NewInferenceStub());
    history_.resize(agents.size());
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        for (size_t i = 0; i < stubs_.size(); ++i) {
          std::string version = ListedVersion(*stubs_[i]);
          const SysClock::time_point now = SysClock::now();
          std::lock_guard lock(mu_);
          if (history_[i].empty() || history_[i].back().second != version) {
            history_[i].emplace_back(now, version);
          }
        }
        std::this_thread::sleep_for(20ms);
      }
    });
  }
  ~VersionWatch() {
    stop_ = true;
    thread_.join();
  }
  // The version listed by agent i at time t (the last change at or before t).
  std::string At(size_t i, SysClock::time_point t) {
    std::lock_guard lock(mu_);
    std::string version;
    for (const auto& [when, v] : history_[i]) {
      if (when > t) break;
      version = v;
    }
    return version;
  }
  // The first time at or after t from which agent i lists `version` without a change since.
  std::optional<SysClock::time_point> SettledOn(size_t i, const std::string& version,
                                                SysClock::time_point t) {
    std::lock_guard lock(mu_);
    const auto& h = history_[i];
    if (h.empty() || h.back().second != version) return std::nullopt;
    SysClock::time_point since = h.back().first;
    for (size_t k = h.size(); k-- > 0 && h[k].second == version;) since = h[k].first;
    return std::max(since, t);
  }
  bool EverListed(size_t i, const std::string& version) {
    std::lock_guard lock(mu_);
    for (const auto& [when, v] : history_[i]) {
      if (v == version) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs_;
  std::mutex mu_;
  std::vector<std::vector<std::pair<SysClock::time_point, std::string>>> history_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int Fail(const std::string& message, ServerHarness* server = nullptr) {
  std::cerr << "edgefleet-bench-rollback: " << message << "\n";
  if (server != nullptr) {
    std::cerr << "---- server log ----\n"
              << edgefleet::test::ReadFileTail(server->log_path(), 4000) << "\n";
  }
  return 1;
}

int Run(const Options& o) {
  const auto expected =
      edgefleet::test::LoadExpectedModels(o.models + "/expected.txt").at("classifier_v1.onnx");
  edgefleet::test::TestDatabase db;
  edgefleet::test::TempDir tmp;
  ServerHarness server(o.bin_dir, tmp.Sub("server"), db.url());
  const std::string interval = absl::StrCat(o.check_in_seconds);
  server.set_extra_args({"--check-in-interval-seconds", interval, "--rollout-interval-ms",
                         absl::StrCat(o.rollout_interval_ms)});
  server.Start();
  v1::EnrollmentToken token;
  if (auto s = server.CreateEnrollmentToken(static_cast<uint32_t>(o.agents), {}, &token); !s.ok())
    return Fail("enrollment token: " + s.error_message(), &server);

  std::vector<std::unique_ptr<AgentHarness>> agents;
  for (int i = 0; i < o.agents; ++i) {
    agents.push_back(std::make_unique<AgentHarness>(o.bin_dir, tmp.Sub(absl::StrCat("agent-", i)),
                                                    absl::StrCat("dev-", i)));
    agents.back()->set_extra_args({"--check-in-interval-seconds", interval});
    agents.back()->Start(server.device_address(), server.ca_file(), token.token());
  }
  const auto long_wait = std::chrono::seconds(60 + 10 * o.check_in_seconds);
  v1::ModelVersion pushed;
  if (auto s = server.PushClassifier("classifier", "1", o.models + "/classifier_v1.onnx", &pushed);
      !s.ok())
    return Fail("push v1: " + s.error_message(), &server);
  v1::Deployment deployment;
  if (auto s = server.CreateDeployment("classifier", "1", "", &deployment); !s.ok())
    return Fail("deploy v1: " + s.error_message(), &server);
  for (const auto& a : agents) {
    auto stub = a->NewInferenceStub();
    if (!edgefleet::test::WaitFor([&] { return ListedVersion(*stub) == "1"; }, long_wait, 100ms))
      return Fail(a->device_id() + " never served v1", &server);
  }
  std::cerr << "all " << o.agents << " agents serve v1\n";

  // Traffic on the even agents: the wave's devices among them fail probation on v2.
  std::atomic<bool> stop_traffic{false};
  std::thread traffic([&] {
    std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs;
    for (size_t i = 0; i < agents.size(); i += 2) stubs.push_back(agents[i]->NewInferenceStub());
    v1::PredictRequest request;
    request.set_model_name("classifier");
    for (const auto& t : expected.inputs) *request.add_inputs() = t;
    while (!stop_traffic.load()) {
      for (auto& stub : stubs) {
        grpc::ClientContext context;
        context.set_deadline(SysClock::now() + 2s);
        v1::PredictResponse response;
        // Refusals and NaN answers are what this traffic is for; nothing to check here.
        (void)stub->Predict(&context, request, &response);
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  struct StopTraffic {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~StopTraffic() {
      stop = true;
      thread.join();
    }
  } stop_traffic_at_exit{stop_traffic, traffic};

  VersionWatch watch(agents);
  if (auto s = server.PushClassifier("classifier", "2", o.models + "/classifier_nan.onnx", &pushed);
      !s.ok())
    return Fail("push v2: " + s.error_message(), &server);
  v1::CreateRolloutRequest create;
  create.set_name("bench");
  create.set_model_name("classifier");
  create.set_version("2");
  create.add_waves()->set_device_count(static_cast<uint64_t>(o.wave_devices));
  create.add_waves()->set_percent(100);
  create.mutable_soak()->set_seconds(3600);  // the first wave never promotes by itself
  // Decide on the whole wave's evidence, so that the devices without traffic are on v2.
  create.mutable_gates()->set_min_finished_devices(static_cast<uint64_t>(o.wave_devices));
  create.set_on_failure(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  v1::Rollout rollout;
  {
    grpc::ClientContext context;
    server.Authorize(&context);
    if (auto s = server.admin().CreateRollout(&context, create, &rollout); !s.ok())
      return Fail("create rollout: " + s.error_message(), &server);
  }
  auto get = [&]() -> std::optional<v1::Rollout> {
    grpc::ClientContext context;
    server.Authorize(&context);
    v1::GetRolloutRequest request;
    request.set_name("bench");
    v1::Rollout r;
    if (!server.admin().GetRollout(&context, request, &r).ok()) return std::nullopt;
    return r;
  };
  std::optional<v1::Rollout> got;
  if (!edgefleet::test::WaitFor(
          [&] {
            got = get();
            return got && (got->state() == v1::ROLLOUT_STATE_ROLLED_BACK ||
                           got->state() == v1::ROLLOUT_STATE_PAUSED ||
                           got->state() == v1::ROLLOUT_STATE_ABORTED);
          },
          long_wait, 100ms) ||
      got->state() != v1::ROLLOUT_STATE_ROLLED_BACK) {
    return Fail(absl::StrCat("the rollout did not roll back: ", got ? got->DebugString() : ""),
                &server);
  }
  std::optional<SysClock::time_point> failed_at;
  std::string decision;
  for (const auto& e : got->events()) {
    if (e.kind() == v1::ROLLOUT_EVENT_KIND_ROLLED_BACK) {
      failed_at = FromTimestamp(e.at());
      decision = e.message();
    }
  }
  if (!failed_at) return Fail("no ROLLED_BACK event", &server);
  // Read as soon as the rollback is seen (within 100 ms of it): what the swap back downloads.
  const double bytes_before =
      edgefleet::test::MetricValue(server.Metrics(), "edgefleet_artifact_bytes_served_total")
          .value_or(0);

  // Every agent lists v1 again; when did the last one get there?
  if (!edgefleet::test::WaitFor(
          [&] {
            for (size_t i = 0; i < agents.size(); ++i) {
              if (!watch.SettledOn(i, "1", *failed_at)) return false;
            }
            return true;
          },
          long_wait, 50ms)) {
    return Fail("not every agent went back to v1", &server);
  }
  const double bytes_after =
      edgefleet::test::MetricValue(server.Metrics(), "edgefleet_artifact_bytes_served_total")
          .value_or(0);

  std::string per_agent_text, per_agent_json;
  double worst = 0;
  int on_v2_at_failure = 0, ever_v2 = 0;
  for (size_t i = 0; i < agents.size(); ++i) {
    const std::string at_failure = watch.At(i, *failed_at);
    const bool was_v2 = at_failure == "2";
    const bool saw_v2 = watch.EverListed(i, "2");
    on_v2_at_failure += was_v2;
    ever_v2 += saw_v2;
    const double seconds = Seconds(*watch.SettledOn(i, "1", *failed_at) - *failed_at);
    worst = std::max(worst, seconds);
    absl::StrAppendFormat(
        &per_agent_text,
        "  %-6s traffic=%-3s listed v2 at some point=%-3s at the gate failure=%-2s"
        " back on v1 after %.3f s\n",
        agents[i]->device_id(), i % 2 == 0 ? "yes" : "no", saw_v2 ? "yes" : "no",
        at_failure.empty() ? "-" : at_failure, seconds);
    absl::StrAppendFormat(
        &per_agent_json,
        R"(%s    {"device": "%s", "traffic": %s, "listed_v2": %s, "at_gate_failure": "%s", "seconds_to_v1": %.3f})",
        i == 0 ? "" : ",\n", agents[i]->device_id(), i % 2 == 0 ? "true" : "false",
        saw_v2 ? "true" : "false", at_failure, seconds);
  }
  const double intervals = worst / o.check_in_seconds;
  std::string text = absl::StrFormat(
      "bench/rollback: %d agents, first wave %d devices, check-in every %d s, controller every "
      "%d ms\n"
      "gate failure (ROLLED_BACK event): %s\n"
      "devices listing v2 at the gate failure: %d (that ever listed v2: %d)\n%s"
      "gate failure -> every device serving v1: %.3f s = %.2f check-in intervals  %s (target <= "
      "2)\n"
      "artifact bytes served from the rollback to the end: %.0f%s\n",
      o.agents, o.wave_devices, o.check_in_seconds, o.rollout_interval_ms, decision,
      on_v2_at_failure, ever_v2, per_agent_text, worst, intervals,
      intervals <= 2.0 ? "PASS" : "FAIL", bytes_after - bytes_before,
      bytes_after == bytes_before ? " (the swap back needs no download)" : "");
  std::cout << text;
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << absl::StrFormat(
        R"({
  "agents": %d, "wave_devices": %d, "check_in_seconds": %d, "rollout_interval_ms": %d,
  "on_v2_at_gate_failure": %d, "ever_listed_v2": %d,
  "seconds_to_all_v1": %.3f, "check_in_intervals": %.3f,
  "artifact_bytes_served_during_rollback": %.0f,
  "devices": [
%s
  ]
}
)",
        o.agents, o.wave_devices, o.check_in_seconds, o.rollout_interval_ms, on_v2_at_failure,
        ever_v2, worst, intervals, bytes_after - bytes_before, per_agent_json);
    if (!out) return Fail("cannot write " + o.json);
  }
  if (on_v2_at_failure == 0) {
    std::cerr << "edgefleet-bench-rollback: no device was on v2 when the gate failed, so nothing "
                 "was rolled back on a device; the figure above measures nothing\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::map<std::string, std::function<bool(const std::string&)>> flags = {
      {"--agents", [&](const std::string& v) { return absl::SimpleAtoi(v, &o.agents); }},
      {"--wave-devices",
       [&](const std::string& v) { return absl::SimpleAtoi(v, &o.wave_devices); }},
      {"--check-in-seconds",
       [&](const std::string& v) { return absl::SimpleAtoi(v, &o.check_in_seconds); }},
      {"--rollout-interval-ms",
       [&](const std::string& v) { return absl::SimpleAtoi(v, &o.rollout_interval_ms); }},
      {"--bin-dir", [&](const std::string& v) { return !(o.bin_dir = v).empty(); }},
      {"--models", [&](const std::string& v) { return !(o.models = v).empty(); }},
      {"--json", [&](const std::string& v) { return !(o.json = v).empty(); }},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kUsage;
      return 0;
    }
    auto it = flags.find(args[i]);
    if (it == flags.end() || i + 1 >= args.size() || !it->second(args[++i])) {
      std::cerr << "edgefleet-bench-rollback: bad flag or value: " << args[i] << "\n" << kUsage;
      return 2;
    }
  }
  if (o.agents < 2 || o.wave_devices < 2 || o.wave_devices > o.agents || o.check_in_seconds < 1) {
    std::cerr << "edgefleet-bench-rollback: need 2 <= --wave-devices <= --agents and "
                 "--check-in-seconds >= 1\n";
    return 2;
  }
  try {
    return Run(o);
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
}
