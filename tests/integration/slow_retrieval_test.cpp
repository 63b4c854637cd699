// TUF's slow-retrieval attack on real processes: something on the path between the agent and the
// server trickles the release's bytes. The agent cuts the download, reports why, keeps serving
// the version it has, and resumes where it stopped once the bytes flow again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "tests/integration/integration_fixture.h"
#include "tests/support/throttling_proxy.h"

namespace edgefleet::test {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class SlowRetrievalTest : public IntegrationTest {};

TEST_F(SlowRetrievalTest, ATrickledDownloadIsCutReportedAndResumedWhileTheOldVersionServes) {
  server_->Start();
  ThrottlingProxy proxy(server_->ports().device);
  AgentHarness& agent = AddAgent("slow-link");
  // A window of 1 s and a floor of 512 KiB/s (so 256 KiB chunks); the trickle below gives
  // 384 KiB/s: the small check-in answers pass, one chunk arrives in the first window, too few.
  agent.set_extra_args(
      {"--download-stall-window-seconds=1", "--download-min-bytes-per-second=524288"});
  agent.Start(proxy.address(), server_->ca_file(), NewEnrollmentToken(1));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));

  // v2 is a 4 MiB model: at 384 KiB/s it would take over 10 s.
  const std::string models = tmp_.Sub("models");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + std::string(EDGEFLEET_SOURCE_DIR) +
                         "/tests/models/make_models.py " + models + " --size-mb 4")
                            .c_str()),
            0);
  proxy.set_downstream_bytes_per_second(384 * 1024);
  v1::Deployment v2 = PushAndDeploy("classifier", "2", models + "/classifier_large.onnx");

  // Wait for a cut that kept bytes: the first cut of the full download can come at byte 0 when
  // the abandoned patch stream still holds the trickle's budget, and there is nothing to resume.
  const std::regex cut_after_progress("interrupted at byte [1-9][0-9]*: download too slow");
  v1::Deployment cut;
  ASSERT_TRUE(WaitFor(
      [&] {
        cut.Clear();
        return server_->GetDeployment(v2.deployment_id(), &cut).ok() && cut.targets_size() == 1 &&
               std::regex_search(cut.targets(0).detail(), cut_after_progress);
      },
      kLongWait, 100ms))
      << "the agent should cut the trickled download and report it: " << cut.ShortDebugString();
  EXPECT_THAT(cut.targets(0).detail(), HasSubstr("DOWNLOAD"));
  EXPECT_THAT(cut.targets(0).detail(), HasSubstr("below the minimum of 524288 bytes/s"));
  v1::PredictResponse during;
  ASSERT_TRUE(PredictSample(agent, "classifier", &during).ok());
  EXPECT_EQ(during.version(), "1") << "v1 keeps serving while v2 cannot be fetched";

  // The path recovers: the download resumes and v2 serves. A cut download is transient, so it
  // used none of the release's attempts.
  proxy.set_downstream_bytes_per_second(0);
  EXPECT_TRUE(WaitForServedVersion(agent, "classifier", "2"));
  EXPECT_THAT(agent.LogText(), ContainsRegex("from_offset=[1-9]")) << "resumed, not restarted";
}

}  // namespace
}  // namespace edgefleet::test
