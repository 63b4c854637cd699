// Address choice across server replicas: the agent stays with a replica that answers, moves on
// when one is unreachable (and only then), and a download cut by a replica's death resumes from
// its partial bytes on the next one.
#include "agent/update/failover_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "common/crypto/sha256.h"
#include "tests/fakes/fake_device_transport.h"

namespace edgefleet::agent {
namespace {

// A replica that can be taken down: while down every call fails with `down_code`.
class Replica final : public fakes::FakeDeviceTransport {
 public:
  std::atomic<bool> down{false};
  std::atomic<absl::StatusCode> down_code{absl::StatusCode::kUnavailable};
  std::atomic<int> check_ins{0};

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    ++check_ins;
    if (down) return absl::Status(down_code, "replica down");
    return FakeDeviceTransport::CheckIn(request);
  }
  absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(std::string_view)>& sink) override {
    if (down) return absl::Status(down_code, "replica down");
    return FakeDeviceTransport::FetchArtifact(sha256, offset, sink);
  }
  absl::Status ReportEvents(const v1::ReportEventRequest& request) override {
    if (down) return absl::Status(down_code, "replica down");
    return FakeDeviceTransport::ReportEvents(request);
  }
};

class FailoverTransportTest : public ::testing::Test {
 protected:
  // Three replicas "a:1", "b:2", "c:3", tried in that order.
  void SetUp() override {
    std::vector<FailoverTransport::Replica> list;
    for (const char* address : {"a:1", "b:2", "c:3"}) {
      auto replica = std::make_unique<Replica>();
      replicas_.push_back(replica.get());
      list.push_back({address, std::move(replica)});
    }
    transport_ = std::make_unique<FailoverTransport>(std::move(list));
  }

  absl::Status CheckIn() { return transport_->CheckIn(v1::CheckInRequest()).status(); }

  std::vector<Replica*> replicas_;
  std::unique_ptr<FailoverTransport> transport_;
};

TEST_F(FailoverTransportTest, StaysWithTheFirstReplicaWhileItAnswers) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(CheckIn().ok());
  EXPECT_EQ(replicas_[0]->check_ins, 5);
  EXPECT_EQ(replicas_[1]->check_ins, 0);
  EXPECT_EQ(transport_->current_address(), "a:1");
}

TEST_F(FailoverTransportTest, UnreachableReplicaSendsTheNextCallToTheNextAndStaysThere) {
  replicas_[0]->down = true;
  // The failed call's error is the agent's to back off on; the next call goes elsewhere.
  EXPECT_EQ(CheckIn().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(transport_->current_address(), "b:2");
  ASSERT_TRUE(CheckIn().ok());
  // The first replica comes back: the agent stays with the one that works.
  replicas_[0]->down = false;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(CheckIn().ok());
  EXPECT_EQ(replicas_[0]->check_ins, 1);
  EXPECT_EQ(replicas_[1]->check_ins, 4);
  EXPECT_EQ(transport_->current_address(), "b:2");
}

TEST_F(FailoverTransportTest, DeadlineExceededAlsoMovesOnAndTheListWrapsAround) {
  replicas_[1]->down_code = absl::StatusCode::kDeadlineExceeded;
  replicas_[0]->down = true;
  replicas_[1]->down = true;
  replicas_[2]->down = true;
  for (const char* next : {"b:2", "c:3", "a:1"}) {
    EXPECT_FALSE(CheckIn().ok());
    EXPECT_EQ(transport_->current_address(), next);
  }
  replicas_[0]->down = false;
  EXPECT_TRUE(CheckIn().ok());
  EXPECT_EQ(transport_->current_address(), "a:1");
}

TEST_F(FailoverTransportTest, OtherErrorsAreTheServersAnswerAndDoNotMoveOn) {
  for (absl::StatusCode code :
       {absl::StatusCode::kPermissionDenied, absl::StatusCode::kUnauthenticated,
        absl::StatusCode::kNotFound, absl::StatusCode::kInvalidArgument,
        absl::StatusCode::kInternal, absl::StatusCode::kResourceExhausted}) {
    replicas_[0]->down_code = code;
    replicas_[0]->down = true;
    EXPECT_EQ(CheckIn().code(), code);
    EXPECT_EQ(transport_->current_address(), "a:1") << absl::StatusCodeToString(code);
  }
}

TEST_F(FailoverTransportTest, EveryCallKindFailsOver) {
  replicas_[0]->down = true;
  EXPECT_FALSE(transport_->ReportEvents(v1::ReportEventRequest()).ok());
  EXPECT_EQ(transport_->current_address(), "b:2");
  EXPECT_TRUE(transport_->ReportEvents(v1::ReportEventRequest()).ok());
  replicas_[1]->SetTelemetryAnswer(fakes::FakeDeviceTransport::TelemetryAnswer::kUnavailable);
  EXPECT_FALSE(transport_->UploadTelemetry(v1::UploadTelemetryRequest()).ok());
  EXPECT_EQ(transport_->current_address(), "c:3");
}

// A replica dies halfway through a download: the next attempt asks the next replica for the rest,
// from the offset the partial bytes reached, and the bytes join up.
TEST_F(FailoverTransportTest, DownloadCutByAReplicaResumesOnTheNextFromItsOffset) {
  std::string artifact(10000, '\0');
  for (size_t i = 0; i < artifact.size(); ++i) artifact[i] = static_cast<char>(i * 7);
  std::string sha;
  for (Replica* r : replicas_) sha = r->AddArtifact(artifact);
  replicas_[0]->SetBehavior(sha, fakes::FakeDeviceTransport::Behavior::FailAfterBytes(4000));
  std::string received;
  auto sink = [&](std::string_view data) {
    received.append(data);
    return absl::OkStatus();
  };
  absl::Status first = transport_->FetchArtifact(sha, 0, sink);
  EXPECT_EQ(first.code(), absl::StatusCode::kUnavailable);
  ASSERT_GT(received.size(), 0u);
  ASSERT_LT(received.size(), artifact.size());
  EXPECT_EQ(transport_->current_address(), "b:2");
  ASSERT_TRUE(transport_->FetchArtifact(sha, received.size(), sink).ok());
  EXPECT_EQ(received, artifact);
  ASSERT_EQ(replicas_[1]->Fetches().size(), 1u);
  EXPECT_GT(replicas_[1]->Fetches()[0].offset, 0u) << "resumed, not started over";
}

// The agent refusing bytes (a digest mismatch, a full disk) is not the server's absence.
TEST_F(FailoverTransportTest, DownloadTheAgentStopsDoesNotMoveOn) {
  std::string sha;
  for (Replica* r : replicas_) sha = r->AddArtifact(std::string(1000, 'x'));
  absl::Status refused = transport_->FetchArtifact(
      sha, 0, [](std::string_view) { return absl::UnavailableError("disk gone"); });
  EXPECT_EQ(refused.message(), "disk gone");
  EXPECT_EQ(transport_->current_address(), "a:1");
}

TEST(ServerAddressesTest, SingleAddressThenTheListInOrderWithoutRepeats) {
  v1::AgentConfig config;
  config.set_server_address("a:1");
  EXPECT_EQ(ServerAddresses(config), (std::vector<std::string>{"a:1"}));
  config.add_server_addresses("b:2");
  config.add_server_addresses("a:1");
  config.add_server_addresses("");
  config.add_server_addresses("c:3");
  EXPECT_EQ(ServerAddresses(config), (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  config.clear_server_address();
  EXPECT_EQ(ServerAddresses(config), (std::vector<std::string>{"b:2", "a:1", "c:3"}));
}

TEST(OnFirstReachableTest, TriesAddressesUntilOneAnswers) {
  std::vector<std::string> tried;
  auto call = [&](const std::string& address) -> absl::StatusOr<int> {
    tried.push_back(address);
    if (address == "a:1") return absl::UnavailableError("down");
    if (address == "b:2") return absl::PermissionDeniedError("bad token");
    return 3;
  };
  auto answer = OnFirstReachable<int>({"a:1", "b:2", "c:3"}, call);
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kPermissionDenied)
      << "a refusal is the answer; no other replica is asked";
  EXPECT_EQ(tried, (std::vector<std::string>{"a:1", "b:2"}));
  tried.clear();
  auto last = OnFirstReachable<int>({"a:1", "c:3"}, call);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, 3);
  auto none = OnFirstReachable<int>({"a:1"}, call);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace edgefleet::agent
