// Faults a fleet meets in the field, inflicted on real server and agent processes: a slow, lossy
// link that keeps dropping (a network namespace and veth pair shaped by tc netem, or tbf and
// nftables where the kernel has no netem), a full disk on the server's artifact store and on
// the device (tmpfs), PostgreSQL restarted under the server, and a device clock a day off
// (libfaketime). Root only; skipped elsewhere.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <regex>
#include <thread>

#include "tests/faults/system_faults.h"
#include "tests/integration/integration_fixture.h"
#include "tests/support/onnx_bytes.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1 << 20;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// Files in `dir` and below (0 when it does not exist).
size_t FilesUnder(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    n += it->is_regular_file();
  }
  return n;
}

class FaultTest : public IntegrationTest {
 protected:
  void SetUp() override {
    std::string why;
    if (!CanInjectSystemFaults(&why)) GTEST_SKIP() << why;
    IntegrationTest::SetUp();
  }

  // The failed release `version` of `model` as the device reports it; nullopt before it does.
  std::optional<v1::InstalledModel> ReportedFailure(const std::string& device_id,
                                                    const std::string& model,
                                                    const std::string& version) {
    v1::Device device;
    if (!server_->GetDevice(device_id, &device).ok()) return std::nullopt;
    for (const auto& m : device.inventory().models()) {
      if (m.model_name() == model && m.version() == version && m.state() == v1::MODEL_STATE_FAILED)
        return m;
    }
    return std::nullopt;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(server_->Metrics(), name, labels).value_or(0);
  }
};

// ---------------------------------------------------------------------------------------------
// A model arrives over a 1 Mbit/s link with 5% loss that drops again and again: each drop cuts
// the download (the agent's stall watchdog), the next check-in resumes it from the bytes on
// disk, and the assembled file verifies. The full-size run (100 MB, a drop every 30 s) is
// bench/faults/run.sh; these defaults keep CI to about a minute.
TEST_F(FaultTest, ModelArrivesOverLossyDroppingLinkByResuming) {
  const uint64_t model_mib = EnvOr("EDGEFLEET_FAULT_MODEL_MIB", 3);
  const auto drop_every = std::chrono::seconds(EnvOr("EDGEFLEET_FAULT_DROP_EVERY_SECONDS", 12));
  const auto drop_for = std::chrono::seconds(EnvOr("EDGEFLEET_FAULT_DROP_SECONDS", 6));
  const auto deadline = std::chrono::seconds(EnvOr("EDGEFLEET_FAULT_TIMEOUT_SECONDS", 240));
  const std::string rate = std::getenv("EDGEFLEET_FAULT_RATE") != nullptr
                               ? std::getenv("EDGEFLEET_FAULT_RATE")
                               : "1mbit";

  // A classifier with a hidden layer that makes it about model_mib MiB, and its sample output.
  const std::string models = tmp_.Sub("models");
  ASSERT_EQ(RunTool("/usr/bin/python3",
                    {EDGEFLEET_SOURCE_DIR "/tests/models/make_models.py", models, "--size-mb",
                     std::to_string(model_mib)},
                    tmp_.Sub("make_models.log")),
            0)
      << ReadFile(tmp_.Sub("make_models.log")).value_or("");
  const std::string model_path = models + "/classifier_large.onnx";
  const uint64_t model_bytes = fs::file_size(model_path);
  const ExpectedModel expected =
      LoadExpectedModels(models + "/expected.txt").at("classifier_large.onnx");

  VethNamespace link;
  server_->set_device_host(link.host_address());
  server_->Start();
  AgentHarness& agent = AddAgent("lossy");
  agent.set_launcher(link.Launcher());
  // A download that gets under 2 KB/s for 3 s is cut (a dropped link), and resumed at the next
  // check-in; the link's own 5% loss alone stays above that.
  agent.set_extra_args({"--download-stall-window-seconds", "3", "--download-min-bytes-per-second",
                        "2000", "--max-backoff-seconds", "2"});
  agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1)) << "the agent did not enroll across the veth pair";
  ASSERT_TRUE(link.Shape(rate, 5, 20));

  v1::ModelVersion pushed;
  grpc::Status push = server_->PushClassifier("big", "1", model_path, &pushed);
  ASSERT_TRUE(push.ok()) << push.error_message();
  v1::Deployment deployment;
  grpc::Status deploy = server_->CreateDeployment("big", "1", "", &deployment);
  ASSERT_TRUE(deploy.ok()) << deploy.error_message();
  const auto started = std::chrono::steady_clock::now();

  // The link drops for drop_for every drop_every until the model serves.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::atomic<int> drops{0};
  std::thread flapper([&] {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, drop_every, [&] { return done; })) {
      link.SetLinkUp(false);
      ++drops;
      cv.wait_for(lock, drop_for, [&] { return done; });
      link.SetLinkUp(true);
    }
  });
  const bool served = WaitFor(
      [&] {
        v1::PredictResponse r;
        return agent.Predict("big", expected.inputs, &r).ok() && r.version() == "1";
      },
      deadline, 500ms);
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
          .count();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  flapper.join();
  link.Unshape();  // the rest of the test talks at full speed
  ASSERT_TRUE(served) << "the model did not arrive within " << deadline.count() << " s";

  // It serves what the classifier computes: the verified bytes, not just any file.
  v1::PredictResponse answer;
  ASSERT_TRUE(agent.Predict("big", expected.inputs, &answer).ok());
  ASSERT_EQ(answer.outputs_size(), 1);
  EXPECT_LT(MaxAbsDifference(answer.outputs(0), expected.outputs.at(0)), 1e-4);

  const double resumes =
      Metric("edgefleet_artifact_fetches_total", {{"kind", "full"}, {"from", "resume"}});
  const double bytes_served = Metric("edgefleet_artifact_bytes_served_total", {{"kind", "full"}});
  std::cout << "{\"model_bytes\":" << model_bytes << ",\"rate\":\"" << rate
            << "\",\"loss_percent\":5,\"delay_ms\":" << (link.delay_applied() ? 20 : 0)
            << ",\"drop_every_s\":" << drop_every.count() << ",\"drop_for_s\":" << drop_for.count()
            << ",\"seconds\":" << seconds << ",\"drops\":" << drops.load()
            << ",\"resumes\":" << resumes
            << ",\"bytes_served\":" << static_cast<uint64_t>(bytes_served)
            << ",\"bytes_resent\":" << static_cast<int64_t>(bytes_served - model_bytes) << "}"
            << std::endl;
  // The drops fell inside the download, and each cut download went on from where it stopped.
  EXPECT_GE(drops.load(), 2);
  EXPECT_GE(resumes, 2) << "expected the download to be resumed after the drops";
  EXPECT_GE(bytes_served, static_cast<double>(model_bytes));
  // A resumed download asks only for what it lacks: what the server sent beyond the file is what
  // the cuts lost in flight, far less than starting over each time.
  EXPECT_LT(bytes_served - model_bytes, resumes * static_cast<double>(model_bytes) / 2);
  // The agent's side of it: downloads that began where the previous one stopped.
  EXPECT_TRUE(std::regex_search(agent.LogText(), std::regex("from_offset=[1-9]")))
      << "the agent logged no resumed download";
}

// ---------------------------------------------------------------------------------------------
// The server's artifact store fills up during a push: the operator gets RESOURCE_EXHAUSTED
// naming the cause, nothing of the upload stays on disk or in the registry, and what devices
// already serve (and can fetch) is untouched.
TEST_F(FaultTest, FullArtifactStoreRefusesPushAndKeepsWhatServes) {
  SmallDisk disk(server_->data_dir() + "/artifacts", 2 * kMiB);
  server_->Start();
  AgentHarness& agent = StartAgent("store-full", NewEnrollmentToken(1));
  PushAndDeploy("clf", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "clf", "1"));
  const size_t files_before = FilesUnder(server_->data_dir() + "/artifacts");

  v1::PushModelMetadata metadata;
  metadata.set_model_name("clf");
  metadata.set_version("2");
  v1::ModelVersion out;
  grpc::Status push = server_->PushModel(metadata, OnnxModelWith(std::string(3 * kMiB, 'w')), &out);
  EXPECT_EQ(push.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << push.error_message();
  EXPECT_NE(push.error_message().find("artifact store is full"), std::string::npos)
      << push.error_message();
  EXPECT_NE(push.error_message().find("No space left on device"), std::string::npos)
      << push.error_message();

  EXPECT_EQ(FilesUnder(server_->data_dir() + "/artifacts"), files_before)
      << "a partial upload was left in the store";
  v1::GetModelRequest request;
  request.set_model_name("clf");
  v1::Model model;
  grpc::ClientContext context;
  server_->Authorize(&context);
  ASSERT_TRUE(server_->admin().GetModel(&context, request, &model).ok());
  ASSERT_EQ(model.versions_size(), 1) << "the refused version was registered";
  EXPECT_EQ(model.versions(0).version(), "1");

  // Devices keep serving; a new device still fetches version 1 from the store.
  v1::PredictResponse response;
  EXPECT_TRUE(PredictSample(agent, "clf", &response).ok());
  EXPECT_EQ(response.version(), "1");
  AgentHarness& late = StartAgent("store-full-late", NewEnrollmentToken(1));
  EXPECT_TRUE(WaitForServedVersion(late, "clf", "1"));
  // With room again (a small version fits), pushing works without a restart.
  v1::ModelVersion small;
  grpc::Status again = server_->PushClassifier("clf", "2", TestModel("classifier_v2.onnx"), &small);
  EXPECT_TRUE(again.ok()) << again.error_message();
}

// ---------------------------------------------------------------------------------------------
// The device has no room for the next version: the agent refuses it before downloading, reports
// NO_SPACE with the numbers to the server, keeps nothing partial, and keeps serving version 1.
TEST_F(FaultTest, FullDeviceDiskRefusesUpdateAndKeepsServing) {
  server_->Start();
  AgentHarness& agent = AddAgent("device-full");
  SmallDisk disk(agent.state_dir(), 4 * kMiB);
  agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
  PushAndDeploy("clf", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "clf", "1"));

  v1::PushModelMetadata metadata;
  metadata.set_model_name("clf");
  metadata.set_version("2");
  v1::ModelVersion pushed;
  ASSERT_TRUE(
      server_->PushModel(metadata, OnnxModelWith(std::string(6 * kMiB, 'w')), &pushed).ok());
  v1::Deployment deployment;
  ASSERT_TRUE(server_->CreateDeployment("clf", "2", "", &deployment).ok());

  std::optional<v1::InstalledModel> failure;
  ASSERT_TRUE(WaitFor(
      [&] {
        failure = ReportedFailure(agent.device_id(), "clf", "2");
        return failure.has_value();
      },
      kLongWait, 200ms))
      << "the device did not report the refused update";
  EXPECT_NE(failure->detail().find("FAILURE_REASON_NO_SPACE"), std::string::npos)
      << failure->detail();
  EXPECT_NE(failure->detail().find("not enough disk space"), std::string::npos)
      << failure->detail();
  EXPECT_GE(Metric("edgefleet_update_events_total", {{"reason", "FAILURE_REASON_NO_SPACE"}}), 1);

  EXPECT_EQ(FilesUnder(agent.state_dir() + "/downloads"), 0u) << "a partial download was kept";
  v1::PredictResponse response;
  ASSERT_TRUE(PredictSample(agent, "clf", &response).ok());
  EXPECT_EQ(response.version(), "1");
  agent.Stop();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restarts while agents check in and an operator reads the fleet: the server rides
// it out without a restart (its pool reconnects), nothing committed before is lost, and the
// agents, after their backoff, take the next release.
TEST_F(FaultTest, ServerRidesOutPostgresRestartUnderLoad) {
  TempDir pg_parent;
  ::chmod(pg_parent.path().c_str(), 0755);  // the postgres user enters it
  PrivatePostgres pg(pg_parent.Sub("pg"));
  server_ = std::make_unique<ServerHarness>(BinDir(), tmp_.Sub("server-pg"), pg.url());
  server_->Start();
  const std::string token = NewEnrollmentToken(4);
  std::vector<AgentHarness*> fleet;
  for (int i = 0; i < 4; ++i) fleet.push_back(&StartAgent("pg-" + std::to_string(i), token));
  const v1::Deployment first = PushAndDeploy("clf", "1", TestModel("classifier_v1.onnx"));
  for (AgentHarness* a : fleet) ASSERT_TRUE(WaitForServedVersion(*a, "clf", "1"));
  WaitForTargets(first.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);

  // Operator reads in a loop, counting answers, while PostgreSQL restarts.
  std::atomic<bool> stop{false};
  std::atomic<int> ok_reads{0}, failed_reads{0};
  std::thread reader([&] {
    while (!stop) {
      v1::ListDevicesResponse devices;
      (server_->ListDevices("", &devices).ok() ? ok_reads : failed_reads)++;
      std::this_thread::sleep_for(50ms);
    }
  });
  const double check_ins_before = Metric("edgefleet_device_check_ins_total");
  ASSERT_TRUE(pg.Restart());
  const int ok_at_restart = ok_reads.load();
  // Reads succeed again without restarting the server.
  EXPECT_TRUE(WaitFor([&] { return ok_reads.load() > ok_at_restart + 5; }, kLongWait, 100ms));
  stop = true;
  reader.join();
  EXPECT_TRUE(server_->IsRunning()) << "the server exited when PostgreSQL restarted";

  // What was committed before is all there.
  v1::Deployment after;
  ASSERT_TRUE(server_->GetDeployment(first.deployment_id(), &after).ok());
  EXPECT_EQ(after.targets_size(), 4);
  for (const auto& t : after.targets())
    EXPECT_EQ(t.state(), v1::DEPLOYMENT_TARGET_STATE_SERVING) << t.device_id();
  EXPECT_TRUE(WaitForActiveDevices(4));

  // The agents keep checking in, and the next release reaches all of them.
  EXPECT_TRUE(
      WaitFor([&] { return Metric("edgefleet_device_check_ins_total") > check_ins_before + 8; },
              kLongWait, 200ms));
  PushAndDeploy("clf", "2", TestModel("classifier_v2.onnx"));
  for (AgentHarness* a : fleet) EXPECT_TRUE(WaitForServedVersion(*a, "clf", "2"));
  std::cout << "reads during the restart: ok=" << ok_reads << " failed=" << failed_reads
            << std::endl;
  // Processes go before the cluster they use.
  agents_.clear();
  server_->Stop();
}

// ---------------------------------------------------------------------------------------------
// A device whose clock is a day ahead or a day behind enrolls, checks in and updates like any
// other: the server's signed check-in timestamp, not the device's clock, dates what it receives.
// Whether this build has AddressSanitizer: gcc says so with __SANITIZE_ADDRESS__, clang 14 only
// through __has_feature.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
constexpr bool kAddressSanitizer = __has_feature(address_sanitizer);
#else
constexpr bool kAddressSanitizer = false;
#endif

class ClockSkewTest : public FaultTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ClockSkewTest, DeviceADayOffStillUpdates) {
  // libfaketime preloaded directly, as the faketime wrapper would (-m -f --exclude-monotonic)
  // but without it: the wrapper makes a named semaphore per process id that it cannot remove
  // when the agent is killed, and a later wrapper given a recycled id fails on it
  // ("sem_open: File exists") before the agent starts.
  std::string library;
  for (const auto& dir : std::filesystem::directory_iterator("/usr/lib")) {
    const auto candidate = dir.path() / "faketime" / "libfaketimeMT.so.1";
    if (std::filesystem::exists(candidate)) library = candidate.string();
  }
  if (library.empty()) GTEST_SKIP() << "libfaketime is not installed";
  // The ASan runtime and libfaketime both interpose clock_gettime before main. On CI's machine
  // (not on ours) the ASan-built agent then logged only libfaketime's "Unexpected recursive
  // calls to clock_gettime() without proper initialization" and never enrolled. What this test
  // checks is the protocol, not memory safety: the plain build runs it.
  if (kAddressSanitizer) {
    GTEST_SKIP() << "libfaketime and the ASan runtime cannot share a process reliably";
  }
  server_->Start();
  AgentHarness& agent = AddAgent(std::string("skew") + (GetParam()[0] == '+' ? "ahead" : "behind"));
  // The monotonic clock stays: timers and backoff count real seconds (and -1d would take it
  // below zero).
  agent.set_launcher({"/usr/bin/env", "LD_PRELOAD=" + library,
                      std::string("FAKETIME=") + GetParam(), "FAKETIME_DONT_FAKE_MONOTONIC=1"});
  agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1)) << "a device with a skewed clock did not enroll";
  PushAndDeploy("clf", "1", TestModel("classifier_v1.onnx"));
  EXPECT_TRUE(WaitForServedVersion(agent, "clf", "1"));
  PushAndDeploy("clf", "2", TestModel("classifier_v2.onnx"));
  EXPECT_TRUE(WaitForServedVersion(agent, "clf", "2"));
}

INSTANTIATE_TEST_SUITE_P(DayOff, ClockSkewTest, ::testing::Values("+1d", "-1d"),
                         [](const auto& info) {
                           return std::string(info.param[0] == '+' ? "Ahead" : "Behind");
                         });

}  // namespace
}  // namespace edgefleet::test
