// Staged rollouts end to end, driven the way an operator drives them: real server processes run
// the rollout controller (every 100 ms), real agents check in, and the tests create, act on and
// read rollouts through `edgefleetctl` (reading `rollout status -o json`) or the REST API with a
// plain HTTP client. Every transition is the server's; the tests only watch what a user sees.
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

// Parses protobuf JSON strictly (unknown fields are an error), as a client built on the proto
// would; a test failure names the text that did not parse.
template <typename Message>
std::optional<Message> FromJson(const std::string& json) {
  Message out;
  auto status = google::protobuf::util::JsonStringToMessage(json, &out);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in:\n" << json;
  if (!status.ok()) return std::nullopt;
  return out;
}

// A field of a JSON object; a null Value (and a test failure) when it is missing.
const Value& Field(const Struct& object, const std::string& name) {
  static const Value* const kMissing = new Value();
  auto it = object.fields().find(name);
  EXPECT_NE(it, object.fields().end()) << "no \"" << name << "\" in a rollout JSON object";
  return it == object.fields().end() ? *kMissing : it->second;
}

// The JSON of a rollout as a user's script reads it, field names and value types included (the
// proto's JSON mapping: lowerCamelCase names, enum names as strings, 64-bit counts as strings):
// what `parsed` (the same text parsed into v1::Rollout) says must be there under those names.
void ExpectRolloutJson(const std::string& json, const v1::Rollout& parsed) {
  Struct root;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &root).ok()) << json;
  EXPECT_EQ(Field(root, "name").string_value(), parsed.name());
  EXPECT_EQ(Field(root, "state").string_value(), v1::RolloutState_Name(parsed.state()));
  EXPECT_EQ(Field(root, "currentWave").number_value(), parsed.current_wave());
  const auto& waves = Field(root, "waves").list_value().values();
  ASSERT_EQ(waves.size(), parsed.waves_size()) << json;
  for (int i = 0; i < waves.size(); ++i) {
    const Struct& wave = waves[i].struct_value();
    const v1::WaveStatus& want = parsed.waves(i);
    EXPECT_EQ(Field(wave, "state").string_value(), v1::WaveState_Name(want.state()));
    EXPECT_EQ(Field(wave, "targeted").string_value(), std::to_string(want.targeted()));
    EXPECT_EQ(Field(wave, "serving").string_value(), std::to_string(want.serving()));
    EXPECT_EQ(Field(wave, "failed").string_value(), std::to_string(want.failed()));
    const auto& gates = Field(wave, "gates").list_value().values();
    ASSERT_EQ(gates.size(), want.gates_size()) << "wave " << i << ": " << json;
    for (int g = 0; g < gates.size(); ++g) {
      const Struct& gate = gates[g].struct_value();
      EXPECT_EQ(Field(gate, "gate").string_value(), v1::Gate_Name(want.gates(g).gate()));
      EXPECT_EQ(Field(gate, "result").string_value(), v1::GateOutcome_Name(want.gates(g).result()));
      EXPECT_EQ(Field(gate, "value").number_value(), want.gates(g).value());
      EXPECT_EQ(Field(gate, "threshold").number_value(), want.gates(g).threshold());
    }
  }
  const auto& events = Field(root, "events").list_value().values();
  ASSERT_EQ(events.size(), parsed.events_size()) << json;
  for (int e = 0; e < events.size(); ++e) {
    EXPECT_EQ(Field(events[e].struct_value(), "kind").string_value(),
              v1::RolloutEventKind_Name(parsed.events(e).kind()));
  }
}

std::map<v1::RolloutEventKind, int> EventKinds(const v1::Rollout& rollout) {
  std::map<v1::RolloutEventKind, int> kinds;
  for (const auto& e : rollout.events()) ++kinds[e.kind()];
  return kinds;
}

// The result of `gate` in `wave`; a failure (and an unset result) when it was not evaluated.
v1::GateResult GateOf(const v1::WaveStatus& wave, v1::Gate gate) {
  for (const v1::GateResult& g : wave.gates()) {
    if (g.gate() == gate) return g;
  }
  ADD_FAILURE() << "wave " << wave.index() << " has no " << v1::Gate_Name(gate) << ": "
                << wave.ShortDebugString();
  return v1::GateResult();
}

bool AnswersFinite(const v1::PredictResponse& response) {
  for (const auto& t : response.outputs()) {
    for (float v : t.data()) {
      if (!std::isfinite(v)) return false;
    }
  }
  return true;
}

class RolloutTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    server_->set_extra_args({"--rollout-interval-ms", "100"});
  }

  // Starts the server and `n` agents (with `agent_args`), all serving classifier v1 after its
  // probation, so that each rollout starts from a settled fleet.
  // With `replicas` (device addresses of servers on this test's database), agent i is given
  // all of them, starting at the i-th: the fleet is spread over the replicas.
  void StartFleetOnV1(int n, const std::vector<std::string>& agent_args = {},
                      const std::vector<std::string>& replicas = {}) {
    if (!server_->IsRunning()) server_->Start();
    const std::string token = NewEnrollmentToken(static_cast<uint32_t>(n));
    for (int i = 0; i < n; ++i) {
      AgentHarness& agent = AddAgent("dev-" + std::to_string(i));
      agent.set_extra_args(agent_args);
      if (replicas.empty()) {
        agent.Start(server_->device_address(), server_->ca_file(), token);
      } else {
        std::vector<std::string> order = replicas;
        std::rotate(order.begin(), order.begin() + i % order.size(), order.end());
        agent.StartWithReplicas(order, server_->ca_file(), token);
      }
      fleet_.push_back(&agent);
    }
    ASSERT_TRUE(WaitForActiveDevices(static_cast<size_t>(n)));
    v1::Deployment d1 = PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
    for (AgentHarness* agent : fleet_) {
      ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    }
    v1::Deployment settled =
        WaitForTargets(d1.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
    ASSERT_EQ(settled.target_counts().serving(), static_cast<uint64_t>(n))
        << settled.ShortDebugString();
  }

  // `edgefleetctl ARGS` against `server` (this test's by default); a failure names the command
  // and what it printed when it does not exit 0.
  CommandResult CtlOk(const std::vector<std::string>& args, ServerHarness* server = nullptr) {
    CommandResult r = (server != nullptr ? server : server_.get())->Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << "edgefleetctl " << testing::PrintToString(args) << "\n"
                              << r.err << r.out;
    return r;
  }

  // `edgefleetctl model push` of a classifier file.
  void PushWithCtl(const std::string& version, const std::string& file) {
    CommandResult r = CtlOk({"model", "push", "classifier", TestModel(file), "--version", version,
                             "--input", "input:1x4", "--output", "probs:1x3", "-o", "json"});
    auto pushed = FromJson<v1::ModelVersion>(r.out);
    ASSERT_TRUE(pushed.has_value());
    EXPECT_EQ(pushed->version(), version);
  }

  // `edgefleetctl rollout create NAME` of classifier `version` with a 1 s soak and gates that
  // decide once one device finished; checks the answer. These tests are about installs,
  // probation and operator actions on a few devices without steady traffic, and v2 answers
  // differently from v1 by design: the inference gates are off (inference_gate_test.cpp has
  // them).
  void CreateWithCtl(const std::string& name, const std::string& version, const std::string& waves,
                     const std::string& on_failure, ServerHarness* server = nullptr) {
    CommandResult r = CtlOk({"rollout", "create", name, "--model", "classifier", "--version",
                             version, "--waves", waves, "--soak", "1s", "--min-devices", "1",
                             "--on-failure", on_failure, "--inference-gates", "off", "-o", "json"},
                            server);
    auto created = FromJson<v1::Rollout>(r.out);
    ASSERT_TRUE(created.has_value());
    EXPECT_EQ(created->name(), name);
    EXPECT_EQ(created->version(), version);
    EXPECT_EQ(created->state(), v1::ROLLOUT_STATE_PENDING);
    ASSERT_EQ(created->events_size(), 1);
    EXPECT_EQ(created->events(0).kind(), v1::ROLLOUT_EVENT_KIND_CREATED);
  }

  // `edgefleetctl rollout status NAME -o json`, parsed; nullopt (and a failure) when it fails.
  // `json` receives the text printed.
  std::optional<v1::Rollout> Status(const std::string& name, std::string* json = nullptr) {
    CommandResult r = CtlOk({"rollout", "status", name, "-o", "json"});
    if (r.exit_code != 0) return std::nullopt;
    if (json != nullptr) *json = r.out;
    return FromJson<v1::Rollout>(r.out);
  }

  // GET /v1/rollouts/NAME with an HTTP client, parsed; nullopt (and a failure) unless it
  // answers 200. Much quicker than a CLI process: waits for short-lived states use it.
  std::optional<v1::Rollout> RestStatus(const std::string& name, std::string* json = nullptr) {
    auto got = server_->Http()->Get("/v1/rollouts/" + name, server_->AuthHeaders());
    EXPECT_TRUE(got && got->status == 200) << (got ? got->body : httplib::to_string(got.error()));
    if (!got || got->status != 200) return std::nullopt;
    if (json != nullptr) *json = got->body;
    return FromJson<v1::Rollout>(got->body);
  }

  enum class Via { kCli, kRest };

  // Polls `rollout status` (or its REST route) until `done` holds; the last answer (its text in
  // last_json_).
  v1::Rollout WaitForRollout(const std::string& name,
                             const std::function<bool(const v1::Rollout&)>& done,
                             Via via = Via::kCli) {
    v1::Rollout last;
    WaitFor(
        [&] {
          std::optional<v1::Rollout> got =
              via == Via::kCli ? Status(name, &last_json_) : RestStatus(name, &last_json_);
          if (got.has_value()) last = *std::move(got);
          return got.has_value() && done(last);
        },
        kLongWait, via == Via::kCli ? 100ms : 20ms);
    return last;
  }

  v1::Rollout WaitForRolloutState(const std::string& name, v1::RolloutState state) {
    return WaitForRollout(name, [&](const v1::Rollout& r) { return r.state() == state; });
  }

  // The deployment holding a rollout's targets (`deploy list`, then `deploy status`).
  std::optional<v1::Deployment> RolloutDeployment(const std::string& version) {
    auto listed =
        FromJson<v1::ListDeploymentsResponse>(CtlOk({"deploy", "list", "-o", "json"}).out);
    if (!listed.has_value()) return std::nullopt;
    for (const v1::Deployment& d : listed->deployments()) {
      if (d.version() != version) continue;
      return FromJson<v1::Deployment>(
          CtlOk({"deploy", "status", d.deployment_id(), "-o", "json"}).out);
    }
    ADD_FAILURE() << "no deployment of version " << version << ": " << listed->ShortDebugString();
    return std::nullopt;
  }

  double ArtifactBytesServed() {
    return MetricValue(server_->Metrics(), "edgefleet_artifact_bytes_served_total").value_or(0);
  }

  static double FileSize(const std::string& model_file) {
    return static_cast<double>(std::filesystem::file_size(TestModel(model_file)));
  }

  std::vector<AgentHarness*> fleet_;
  std::string last_json_;  // what the last `rollout status` of WaitForRollout printed
};

TEST_F(RolloutTest, GoodVersionGoesThroughThreeWaves) {
  StartFleetOnV1(4);
  ASSERT_FALSE(HasFatalFailure());
  PushWithCtl("2", "classifier_v2.onnx");
  CreateWithCtl("r1", "2", "1,2,100%", "pause");
  ASSERT_FALSE(HasFatalFailure());
  v1::Rollout r = WaitForRolloutState("r1", v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  // The last wave succeeds once one of its devices finished; the other one reports soon after.
  r = WaitForRollout("r1", [&](const v1::Rollout& got) {
    for (const auto& w : got.waves()) {
      if (w.serving() != w.targeted()) return false;
    }
    return true;
  });
  ASSERT_EQ(r.waves_size(), 3) << r.DebugString();
  const uint64_t sizes[] = {1, 1, 2};
  for (int i = 0; i < 3; ++i) {
    const v1::WaveStatus& w = r.waves(i);
    EXPECT_EQ(w.state(), v1::WAVE_STATE_PASSED) << i;
    EXPECT_EQ(w.targeted(), sizes[i]) << i;
    EXPECT_EQ(w.serving(), sizes[i]) << i;
    EXPECT_EQ(w.failed(), 0u) << i;
    for (v1::Gate gate : {v1::GATE_INSTALL_FAILURES, v1::GATE_PROBATION_FAILURES}) {
      v1::GateResult g = GateOf(w, gate);
      EXPECT_EQ(g.result(), v1::GATE_OUTCOME_PASS) << i << ": " << g.ShortDebugString();
      EXPECT_EQ(g.value(), 0) << i;
      EXPECT_EQ(g.threshold(), 5) << i << ": the default limit";
    }
  }
  auto kinds = EventKinds(r);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PAUSED], 0);
  ExpectRolloutJson(last_json_, r);

  auto listed = FromJson<v1::ListRolloutsResponse>(CtlOk({"rollout", "list", "-o", "json"}).out);
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->rollouts_size(), 2) << "r1 and the deployment of v1 (a one-wave rollout)";
  bool found = false;
  for (const v1::Rollout& listed_r : listed->rollouts()) {
    if (listed_r.name() != "r1") continue;
    found = true;
    EXPECT_EQ(listed_r.state(), v1::ROLLOUT_STATE_SUCCEEDED);
    EXPECT_EQ(listed_r.events_size(), 0) << "lists carry no events";
  }
  EXPECT_TRUE(found) << listed->ShortDebugString();
  EXPECT_EQ(MetricValue(server_->Metrics(), "edgefleet_rollouts", {{"state", "succeeded"}}),
            std::optional<double>(2))
      << "r1 and the deployment of v1";

  // An operator rolls the finished rollout back: every device returns to v1 from the copy it
  // kept, with no download.
  const double before = ArtifactBytesServed();
  auto rolled = FromJson<v1::Rollout>(
      CtlOk({"rollout", "rollback", "r1", "--reason", "field reports", "-o", "json"}).out);
  ASSERT_TRUE(rolled.has_value());
  EXPECT_EQ(rolled->state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  const v1::RolloutEvent& last = rolled->events(rolled->events_size() - 1);
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  EXPECT_EQ(last.actor(), v1::ROLLOUT_ACTOR_OPERATOR);
  EXPECT_EQ(last.from_state(), v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_THAT(last.message(), HasSubstr("field reports"));
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
  }
  EXPECT_EQ(ArtifactBytesServed(), before) << "the kept copies served, nothing was downloaded";
}

// Through REST with a plain HTTP client: bad requests are refused with a JSON error body and
// create nothing; the rollout of a version that cannot load stops in its first wave, whose
// device alone downloaded it, and rolls that device back.
TEST_F(RolloutTest, VersionThatFailsToInstallIsRolledBackInTheFirstWaveAndNeverFetchedElsewhere) {
  StartFleetOnV1(4);
  ASSERT_FALSE(HasFatalFailure());
  auto http = server_->Http();
  const auto auth = server_->AuthHeaders();
  auto pushed =
      http->Post("/v1/models/classifier/versions/3?input=input:1x4&output=probs:1x3", auth,
                 ReadFile(TestModel("unloadable.onnx")).value(), "application/octet-stream");
  ASSERT_TRUE(pushed);
  ASSERT_EQ(pushed->status, 200) << pushed->body;

  auto expect_error = [&](const std::string& body, int http_status, const std::string& code,
                          const std::string& message_part) {
    auto result = http->Post("/v1/rollouts", auth, body, "application/json");
    ASSERT_TRUE(result) << body;
    EXPECT_EQ(result->status, http_status) << body << " -> " << result->body;
    EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("application/json"));
    auto error = FromJson<v1::ErrorBody>(result->body);
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error->code(), code) << result->body;
    EXPECT_THAT(error->message(), HasSubstr(message_part)) << body;
  };
  const std::string head = R"({"name": "r1", "modelName": "classifier", )";
  expect_error(head + R"("version": "3", "onFailure": "ROLLOUT_FAILURE_ACTION_RETRY"})", 400,
               "INVALID_ARGUMENT", "invalid value \"ROLLOUT_FAILURE_ACTION_RETRY\"");
  expect_error(head + R"("version": "3", "onFailure": 7})", 400, "INVALID_ARGUMENT",
               "on_failure 7 is not a failure action");
  expect_error(head + R"("version": "3", "waves": [{"percent": 50}, {"percent": 10},
                                                   {"percent": 100}]})",
               400, "INVALID_ARGUMENT", "wave sizes must not decrease");
  expect_error(head + R"("version": "3", "waves": [{"percent": 10}, {"deviceCount": "2"}]})", 400,
               "INVALID_ARGUMENT", "it must be 100%");
  expect_error(head + R"("version": "9"})", 404, "NOT_FOUND", "model classifier version 9");
  auto missing = http->Get("/v1/rollouts/r1", auth);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << "refused requests create nothing: " << missing->body;

  const double before = ArtifactBytesServed();
  // Inference gates on (the default): they are inconclusive without a serving canary, and the
  // failed install stops the wave all the same.
  const std::string create = head + R"("version": "3",
      "waves": [{"deviceCount": "1"}, {"percent": 100}], "soak": "1s",
      "gates": {"minFinishedDevices": "1"}, "onFailure": "ROLLOUT_FAILURE_ACTION_ROLLBACK"})";
  auto created = http->Post("/v1/rollouts", auth, create, "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 200) << created->body;
  auto answer = FromJson<v1::Rollout>(created->body);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->state(), v1::ROLLOUT_STATE_PENDING);
  EXPECT_EQ(answer->on_failure(), v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  expect_error(create, 409, "ALREADY_EXISTS", "rollout r1 already exists");

  v1::Rollout r = WaitForRollout(
      "r1", [](const v1::Rollout& got) { return got.state() == v1::ROLLOUT_STATE_ROLLED_BACK; },
      Via::kRest);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_ROLLED_BACK) << r.DebugString();
  ExpectRolloutJson(last_json_, r);
  ASSERT_EQ(r.waves_size(), 2);
  EXPECT_EQ(r.current_wave(), 0u);
  EXPECT_EQ(r.waves(0).state(), v1::WAVE_STATE_FAILED);
  EXPECT_EQ(r.waves(0).targeted(), 1u);
  EXPECT_EQ(r.waves(0).install_failed(), 1u);
  EXPECT_EQ(r.waves(0).failed(), 1u);
  v1::GateResult install = GateOf(r.waves(0), v1::GATE_INSTALL_FAILURES);
  EXPECT_EQ(install.result(), v1::GATE_OUTCOME_FAIL) << install.ShortDebugString();
  EXPECT_EQ(install.value(), 100);
  EXPECT_EQ(install.threshold(), 5);
  EXPECT_EQ(r.waves(1).targeted(), 0u) << "the second wave never started";
  EXPECT_EQ(r.waves(1).state(), v1::WAVE_STATE_PENDING);
  ASSERT_GT(r.events_size(), 0);
  const v1::RolloutEvent& last = r.events(r.events_size() - 1);
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  EXPECT_EQ(last.actor(), v1::ROLLOUT_ACTOR_CONTROLLER);
  EXPECT_THAT(last.message(), HasSubstr("install_failures: "));
  EXPECT_EQ(EventKinds(r)[v1::ROLLOUT_EVENT_KIND_PROMOTED], 0);

  // Only the first wave's device downloaded the broken version.
  EXPECT_EQ(ArtifactBytesServed() - before, FileSize("unloadable.onnx"));
  // Every device serves v1; the first wave's device is told to run v1 again (a newer release).
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM deployment_targets "
                            "WHERE rollback_metadata_version IS NOT NULL"),
            "1");

  // A finished rollout refuses operator actions, saying why, in JSON.
  auto paused = http->Post("/v1/rollouts/r1/pause", auth, "{}", "application/json");
  ASSERT_TRUE(paused);
  EXPECT_EQ(paused->status, 400) << paused->body;
  auto error = FromJson<v1::ErrorBody>(paused->body);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), "FAILED_PRECONDITION");
  EXPECT_THAT(error->message(), HasSubstr("ROLLED_BACK"));
  // The CLI reads the same rollout.
  std::optional<v1::Rollout> via_cli = Status("r1");
  ASSERT_TRUE(via_cli.has_value());
  EXPECT_EQ(via_cli->state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_EQ(via_cli->events_size(), r.events_size());
}

TEST_F(RolloutTest, ServerRestartMidRolloutContinuesWhereItWas) {
  StartFleetOnV1(3);
  ASSERT_FALSE(HasFatalFailure());
  PushWithCtl("2", "classifier_v2.onnx");
  CreateWithCtl("r1", "2", "1,100%", "pause");
  ASSERT_FALSE(HasFatalFailure());
  v1::Rollout r = WaitForRollout(
      "r1",
      [](const v1::Rollout& got) {
        return got.state() == v1::ROLLOUT_STATE_RUNNING && got.waves(0).targeted() == 1;
      },
      Via::kRest);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_RUNNING) << r.DebugString();
  ASSERT_EQ(r.current_wave(), 0u) << "restarted in the first wave";
  server_->Restart();
  r = WaitForRolloutState("r1", v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  auto kinds = EventKinds(r);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SOAK_STARTED], 2) << "one soak per wave";
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  EXPECT_EQ(r.waves(0).targeted(), 1u);
  EXPECT_EQ(r.waves(1).targeted(), 2u);
}

TEST_F(RolloutTest, TwoServersOnOneDatabaseMakeEachTransitionOnce) {
  StartFleetOnV1(3);
  ASSERT_FALSE(HasFatalFailure());
  PushWithCtl("2", "classifier_v2.onnx");
  ServerHarness replica(BinDir(), tmp_.Sub("replica"), db_->url());
  replica.set_extra_args({"--rollout-interval-ms", "100"});
  replica.set_admin_token(server_->admin_token());
  replica.Start();
  // Created through the replica, read through the first server: one rollout, two controllers.
  CreateWithCtl("r1", "2", "1,2,100%", "pause", &replica);
  ASSERT_FALSE(HasFatalFailure());
  v1::Rollout r = WaitForRolloutState("r1", v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  auto kinds = EventKinds(r);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SOAK_STARTED], 3);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  auto from_replica =
      FromJson<v1::Rollout>(CtlOk({"rollout", "status", "r1", "-o", "json"}, &replica).out);
  ASSERT_TRUE(from_replica.has_value());
  EXPECT_EQ(from_replica->events_size(), r.events_size()) << "both read the same record";
  replica.Stop();
}

// Two replicas share the database, the keys and the artifact store; each agent is given both
// addresses (half of them the replica's first). The replica is SIGKILLed once the rollout has
// promoted its first wave: its agents move to the other server, the rollout finishes there, and
// every transition, audit row and patch was made exactly once.
TEST_F(RolloutTest, ReplicaKilledMidRolloutLosesNothingAndRepeatsNothing) {
  const std::vector<std::string> args = {"--rollout-interval-ms", "100", "--patch-lease-seconds",
                                         "2"};
  server_->set_extra_args(args);
  server_->Start();
  ServerHarness& replica = AddReplica(args);
  replica.Start();
  const std::string survivor = server_->device_address();
  const std::string doomed = replica.device_address();
  StartFleetOnV1(4, {}, {survivor, doomed});
  ASSERT_FALSE(HasFatalFailure());
  PushWithCtl("2", "classifier_v2.onnx");
  // Created through the replica that will die.
  CreateWithCtl("r1", "2", "1,2,100%", "pause", &replica);
  ASSERT_FALSE(HasFatalFailure());
  v1::Rollout r = WaitForRollout(
      "r1", [](const v1::Rollout& got) { return got.current_wave() >= 1; }, Via::kRest);
  ASSERT_GE(r.current_wave(), 1u) << r.DebugString();
  replica.Kill();

  r = WaitForRolloutState("r1", v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  // The agents that began on the replica carried on with the other server.
  for (size_t i = 1; i < fleet_.size(); i += 2) {
    EXPECT_THAT(fleet_[i]->LogText(), HasSubstr("next calls go to address=" + survivor))
        << fleet_[i]->device_id();
  }

  // Each transition once: in the rollout's record and in the table behind it.
  auto kinds = EventKinds(r);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_CREATED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SOAK_STARTED], 3) << "one soak per wave";
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM rollout_events WHERE rollout_name = 'r1'"),
            std::to_string(r.events_size()));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM audit_log WHERE action = 'rollout.create'"), "1");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM audit_log WHERE action = 'deployment.create'"),
            "1");
  // Every device in exactly one wave, every target serving.
  std::optional<v1::Deployment> deployment = RolloutDeployment("2");
  ASSERT_TRUE(deployment.has_value());
  EXPECT_EQ(deployment->targets_size(), 4) << deployment->ShortDebugString();
  EXPECT_EQ(deployment->target_counts().serving(), 4u) << deployment->ShortDebugString();
  uint64_t targeted = 0;
  for (const v1::WaveStatus& w : r.waves()) targeted += w.targeted();
  EXPECT_EQ(targeted, 4u) << r.DebugString();
  // The v1 -> v2 patch: computed once, by one of the replicas.
  EXPECT_EQ(
      db_->QueryValue("SELECT count(*) FROM patches WHERE state = 'pending' OR attempts <> 1"),
      "0");
  EXPECT_NE(db_->QueryValue("SELECT count(*) FROM patches"), "0")
      << "devices holding v1 asked for a patch to v2";
  // Nothing committed before the kill went missing: four active devices, both versions.
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM devices WHERE status = 'active'"), "4");
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM model_versions"), "2");
}

// The version passes warm-up (zeros in, zeros out) but answers NaN for the inputs local traffic
// sends: the first wave's device swaps it back on probation and reports PROBATION_FAILED with its
// numbers; the probation gate fails and the rollout rolls back before any other device fetched it.
TEST_F(RolloutTest, VersionThatFailsProbationOnTheDeviceStopsTheRolloutInItsFirstWave) {
  // Failed releases are not retried during the test (the rollback decides what comes next).
  StartFleetOnV1(3, {"--update-retry-base-seconds", "3600"});
  ASSERT_FALSE(HasFatalFailure());
  PushWithCtl("2", "classifier_nan.onnx");
  const double before = ArtifactBytesServed();

  // Local traffic on every device for the rest of the test; probation judges what it answers.
  std::atomic<bool> stop{false};
  std::atomic<int> nan_answers_from_2{0};
  std::thread traffic([&] {
    while (!stop) {
      for (AgentHarness* agent : fleet_) {
        v1::PredictResponse response;
        if (PredictSample(*agent, "classifier", &response).ok() && response.version() == "2" &&
            !AnswersFinite(response)) {
          ++nan_answers_from_2;
        }
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      thread.join();
    }
  } joiner{stop, traffic};

  CreateWithCtl("r1", "2", "1,100%", "rollback");
  ASSERT_FALSE(HasFatalFailure());
  v1::Rollout r = WaitForRolloutState("r1", v1::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_ROLLED_BACK) << r.DebugString();
  ExpectRolloutJson(last_json_, r);
  EXPECT_GT(nan_answers_from_2.load(), 0) << "version 2 served (and answered NaN) before it was "
                                             "judged";

  // The gate that stopped it, with its numbers.
  ASSERT_EQ(r.waves_size(), 2);
  const v1::WaveStatus& first = r.waves(0);
  EXPECT_EQ(first.state(), v1::WAVE_STATE_FAILED);
  EXPECT_EQ(first.targeted(), 1u);
  EXPECT_EQ(first.probation_failed(), 1u);
  EXPECT_EQ(first.install_failed(), 0u) << "it installed and passed warm-up";
  EXPECT_EQ(first.failed(), 1u);
  v1::GateResult probation = GateOf(first, v1::GATE_PROBATION_FAILURES);
  EXPECT_EQ(probation.result(), v1::GATE_OUTCOME_FAIL) << probation.ShortDebugString();
  EXPECT_EQ(probation.value(), 100);
  EXPECT_EQ(probation.threshold(), 5);
  EXPECT_EQ(probation.devices(), 1u);
  EXPECT_THAT(probation.detail(), HasSubstr("1 of 1 finished devices failed probation"));
  EXPECT_EQ(GateOf(first, v1::GATE_INSTALL_FAILURES).result(), v1::GATE_OUTCOME_PASS);
  EXPECT_EQ(r.waves(1).targeted(), 0u) << "the second wave never started";
  const v1::RolloutEvent& last = r.events(r.events_size() - 1);
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  EXPECT_EQ(last.actor(), v1::ROLLOUT_ACTOR_CONTROLLER);
  EXPECT_THAT(last.message(), HasSubstr("probation_failures: "));
  bool recorded_failing_gate = false;
  for (const v1::GateResult& g : last.gates()) {
    recorded_failing_gate |=
        g.gate() == v1::GATE_PROBATION_FAILURES && g.result() == v1::GATE_OUTCOME_FAIL;
  }
  EXPECT_TRUE(recorded_failing_gate) << last.ShortDebugString();

  // The device's report, with the measured numbers, on the rollout's target.
  std::optional<v1::Deployment> deployment = RolloutDeployment("2");
  ASSERT_TRUE(deployment.has_value());
  ASSERT_EQ(deployment->targets_size(), 1) << deployment->ShortDebugString();
  const v1::DeploymentTarget& target = deployment->targets(0);
  EXPECT_THAT(target.detail(), HasSubstr("FAILURE_REASON_PROBATION_FAILED: "));
  // The agent's numbers: "errors 0/N, non-finite M, p95 ..." with M > 0.
  EXPECT_THAT(target.detail(), ContainsRegex("errors [0-9]+/[1-9][0-9]*, non-finite [1-9]"));
  AgentHarness* judged = nullptr;
  for (AgentHarness* agent : fleet_) {
    if (agent->device_id() == target.device_id()) judged = agent;
  }
  ASSERT_NE(judged, nullptr) << target.device_id();
  EXPECT_THAT(judged->LogText(), HasSubstr("rolled back model=classifier version=2; 1 serves"));

  // Only that device downloaded version 2, and every device serves version 1, answering finite.
  EXPECT_EQ(ArtifactBytesServed() - before, FileSize("classifier_nan.onnx"));
  EXPECT_EQ(db_->QueryValue("SELECT count(DISTINCT device_id) FROM device_events "
                            "WHERE version = '2'"),
            "1");
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    v1::PredictResponse response;
    ASSERT_TRUE(PredictSample(*agent, "classifier", &response).ok());
    EXPECT_TRUE(AnswersFinite(response)) << agent->device_id();
    EXPECT_TRUE(agent->IsRunning()) << agent->device_id();
  }
}

// Operators pause while the controller promotes: a burst of pauses from several threads, each
// with its own HTTP client, is fired when wave 0's soak ends (the controller promotes at its first
// evaluation after that, within 100 ms), aimed later or earlier in the second round by the outcome
// of the first. Each round ends PAUSED in one consistent place: still in wave 0 with nothing
// promoted, or in wave 1 with wave 1's devices targeted and the promotion recorded before the
// pause. One pause wins, the others (and a later `edgefleetctl rollout pause`) are refused;
// `rollout resume` completes the rollout.
TEST_F(RolloutTest, OperatorPauseRacingThePromotionEndsInOneConsistentState) {
  StartFleetOnV1(3);
  ASSERT_FALSE(HasFatalFailure());
  struct Round {
    const char* version;
    const char* file;
  };
  const Round rounds[] = {{"2", "classifier_v2.onnx"}, {"3", "classifier_v1.onnx"}};
  // When a burst starts, from the end of the soak. The next round aims later when the pause won
  // before the promotion (a loaded machine evaluates late), earlier when it came after it.
  std::chrono::milliseconds aim = 20ms;
  std::map<uint32_t, int> paused_in_wave;
  for (const Round& round : rounds) {
    const std::string version = round.version;
    SCOPED_TRACE("version " + version);
    const std::string name = "race-" + version;
    PushWithCtl(version, round.file);
    CreateWithCtl(name, version, "1,100%", "pause");
    ASSERT_FALSE(HasFatalFailure());
    v1::Rollout soaking = WaitForRollout(
        name,
        [](const v1::Rollout& got) {
          // Done when soaking, or when past it (which fails the round below).
          if (got.state() == v1::ROLLOUT_STATE_PENDING) return false;
          return got.state() != v1::ROLLOUT_STATE_RUNNING || got.current_wave() != 0 ||
                 got.waves(0).state() == v1::WAVE_STATE_SOAKING;
        },
        Via::kRest);
    ASSERT_EQ(soaking.waves(0).state(), v1::WAVE_STATE_SOAKING) << soaking.DebugString();
    // The soak ends 1 s after its start (whole seconds on the server's clock, which is ours).
    const auto soak_end = std::chrono::system_clock::time_point(
        std::chrono::seconds(soaking.waves(0).soak_started_at().seconds() + 1));

    // Eight pauses 10 ms apart: aimed at the race, not ordering anything (every interleaving
    // must end consistent).
    constexpr int kPauses = 8;
    std::vector<std::pair<int, std::string>> answers(kPauses);  // HTTP status, body
    std::vector<std::thread> pausers;
    for (int i = 0; i < kPauses; ++i) {
      pausers.emplace_back([&, i, http = server_->Http()] {
        std::this_thread::sleep_until(soak_end + aim + i * 10ms);
        auto answer = http->Post("/v1/rollouts/" + name + "/pause", server_->AuthHeaders(),
                                 R"({"reason": "race"})", "application/json");
        answers[i] = answer ? std::make_pair(answer->status, answer->body)
                            : std::make_pair(0, httplib::to_string(answer.error()));
      });
    }
    for (std::thread& t : pausers) t.join();
    int won = 0;
    for (const auto& [status, body] : answers) {
      if (status == 200) {
        ++won;
        continue;
      }
      EXPECT_EQ(status, 400) << body;
      auto error = FromJson<v1::ErrorBody>(body);
      ASSERT_TRUE(error.has_value());
      EXPECT_EQ(error->code(), "FAILED_PRECONDITION") << "a later pause is refused: " << body;
      EXPECT_THAT(error->message(), HasSubstr("is PAUSED"));
    }
    EXPECT_EQ(won, 1) << "exactly one pause applies";
    CommandResult again = server_->Ctl({"rollout", "pause", name});
    EXPECT_EQ(again.exit_code, 1) << again.out;
    EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION"));
    EXPECT_THAT(again.err, HasSubstr("is PAUSED"));

    std::string json;
    std::optional<v1::Rollout> paused = Status(name, &json);
    ASSERT_TRUE(paused.has_value());
    ExpectRolloutJson(json, *paused);
    ASSERT_EQ(paused->state(), v1::ROLLOUT_STATE_PAUSED) << paused->DebugString();
    // The events: one start, at most one promotion and, if any, before the one pause.
    int pause_at = -1, promote_at = -1, starts = 0, promotions = 0, pauses = 0;
    for (int i = 0; i < paused->events_size(); ++i) {
      const v1::RolloutEvent& e = paused->events(i);
      if (e.kind() == v1::ROLLOUT_EVENT_KIND_WAVE_STARTED) ++starts;
      if (e.kind() == v1::ROLLOUT_EVENT_KIND_PROMOTED) ++promotions, promote_at = i;
      if (e.kind() == v1::ROLLOUT_EVENT_KIND_PAUSED) ++pauses, pause_at = i;
    }
    EXPECT_EQ(starts, 1);
    EXPECT_EQ(pauses, 1);
    ASSERT_GE(pause_at, 0);
    const v1::RolloutEvent& pause = paused->events(pause_at);
    EXPECT_EQ(pause.actor(), v1::ROLLOUT_ACTOR_OPERATOR);
    EXPECT_EQ(pause.from_state(), v1::ROLLOUT_STATE_RUNNING);
    EXPECT_EQ(pause.to_state(), v1::ROLLOUT_STATE_PAUSED);
    EXPECT_EQ(pause_at, paused->events_size() - 1) << "nothing is decided after a pause";
    EXPECT_EQ(pause.wave(), paused->current_wave());
    ++paused_in_wave[paused->current_wave()];
    aim += paused->current_wave() == 0 ? 130ms : -60ms;
    if (paused->current_wave() == 0) {
      EXPECT_EQ(promotions, 0) << paused->DebugString();
      EXPECT_EQ(paused->waves(0).targeted(), 1u);
      EXPECT_EQ(paused->waves(1).targeted(), 0u) << "no device of wave 1 was targeted";
      EXPECT_EQ(paused->waves(1).state(), v1::WAVE_STATE_PENDING);
    } else {
      ASSERT_EQ(paused->current_wave(), 1u) << paused->DebugString();
      EXPECT_EQ(promotions, 1);
      EXPECT_LT(promote_at, pause_at) << "the promotion happened before the pause";
      EXPECT_EQ(paused->waves(0).state(), v1::WAVE_STATE_PASSED);
      EXPECT_EQ(paused->waves(1).targeted(), 2u) << "the promotion targeted wave 1's devices";
      EXPECT_EQ(paused->waves(1).state(), v1::WAVE_STATE_STOPPED);
    }
    // The rollout's targets are exactly its waves' devices.
    std::optional<v1::Deployment> deployment = RolloutDeployment(version);
    ASSERT_TRUE(deployment.has_value());
    EXPECT_EQ(deployment->target_count(),
              paused->waves(0).targeted() + paused->waves(1).targeted());

    CtlOk({"rollout", "resume", name, "--reason", "done racing"});
    v1::Rollout done = WaitForRolloutState(name, v1::ROLLOUT_STATE_SUCCEEDED);
    ASSERT_EQ(done.state(), v1::ROLLOUT_STATE_SUCCEEDED) << done.DebugString();
    auto kinds = EventKinds(done);
    EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
    EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 1) << "wave 1 started once";
    EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PAUSED], 1);
    EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_RESUMED], 1);
    EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
    EXPECT_EQ(done.waves(1).targeted(), 2u);
    for (AgentHarness* agent : fleet_) {
      ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", version)) << agent->device_id();
    }
  }
  // Which side won each round depends on timing; both must be consistent (see above).
  RecordProperty("paused_in_wave_0", paused_in_wave[0]);
  RecordProperty("paused_in_wave_1", paused_in_wave[1]);
  std::cout << "pause race: " << paused_in_wave[0] << " rounds paused in wave 0, "
            << paused_in_wave[1] << " in wave 1\n";
}

}  // namespace
}  // namespace edgefleet::test
