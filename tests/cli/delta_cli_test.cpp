// Tests of `edgefleetctl delta` and the standalone edgefleet-delta: patches made and applied
// through the CLI rebuild the new file byte for byte, `info` reports what the patch carries, and
// failures leave no output behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/parsers.h"
#include "common/crypto/sha256.h"
#include "tests/support/process.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

EnvLookup NoEnv() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = Run(args, out, err, NoEnv());
  return {code, out.str(), err.str()};
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& data) {
  std::ofstream(path, std::ios::binary)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return crypto::ToHex(std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// Something shaped like model weights: float32 values, a fine-tune nudging a fraction of them.
std::string Weights(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::string bytes(count * sizeof(float), '\0');
  for (size_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
  }
  return bytes;
}

std::string FineTune(std::string bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, bytes.size() / sizeof(float) - 1);
  for (int i = 0; i < 2000; ++i) {
    const size_t at = pick(rng) * sizeof(float);
    float v;
    std::memcpy(&v, bytes.data() + at, sizeof(float));
    v *= 1.001f;
    std::memcpy(bytes.data() + at, &v, sizeof(float));
  }
  return bytes;
}

// Every file in `dir`, so a test can see that a failure left no stray temporary.
std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class DeltaCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("delta-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    old_data_ = Weights(256 * 1024, 7);  // 1 MiB
    new_data_ = FineTune(old_data_, 11);
    WriteFile(Path("old.bin"), old_data_);
    WriteFile(Path("new.bin"), new_data_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // diff + apply through Run(); returns the rebuilt bytes.
  std::string RoundTrip(const std::string& codec) {
    Result diff =
        RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec", codec});
    EXPECT_EQ(diff.code, 0) << diff.err;
    EXPECT_THAT(diff.out, HasSubstr("Codec:"));
    EXPECT_THAT(diff.out, HasSubstr(codec));
    EXPECT_LT(fs::file_size(Path("p")), new_data_.size() / 4) << "a 0.8% change should patch small";
    Result apply = RunCli({"delta", "apply", Path("old.bin"), Path("p"), Path("out.bin")});
    EXPECT_EQ(apply.code, 0) << apply.err;
    EXPECT_THAT(apply.out, HasSubstr("Wrote"));
    return ReadFile(Path("out.bin"));
  }

  fs::path dir_;
  std::string old_data_;
  std::string new_data_;
};

TEST_F(DeltaCliTest, MatchZstdRoundTripRebuildsNewFile) {
  EXPECT_EQ(RoundTrip("match-zstd"), new_data_);
}

TEST_F(DeltaCliTest, Bsdiff40RoundTripRebuildsNewFile) {
  EXPECT_EQ(RoundTrip("bsdiff40"), new_data_);
}

TEST_F(DeltaCliTest, AutoDiffPrintsJsonAndRoundTrips) {
  Result diff = RunCli({"-o", "json", "delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"),
                        "--time-budget", "30"});
  ASSERT_EQ(diff.code, 0) << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("\"requested_codec\": \"auto\""));
  EXPECT_THAT(diff.out, HasSubstr("\"full_is_smaller\": false"));
  EXPECT_THAT(diff.out,
              HasSubstr("\"patch_size_bytes\": " + std::to_string(fs::file_size(Path("p")))));
  EXPECT_THAT(diff.out, HasSubstr("\"new_size_bytes\": " + std::to_string(new_data_.size())));
  ASSERT_EQ(RunCli({"delta", "apply", Path("old.bin"), Path("p"), Path("out.bin")}).code, 0);
  EXPECT_EQ(ReadFile(Path("out.bin")), new_data_);
}

TEST_F(DeltaCliTest, InfoShowsCodecSizesAndDigests) {
  ASSERT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec",
                    "match-zstd"})
                .code,
            0);
  Result info = RunCli({"delta", "info", Path("p")});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_THAT(info.out, HasSubstr("match-zstd"));
  EXPECT_THAT(info.out, HasSubstr(std::to_string(old_data_.size()) + " bytes"));
  EXPECT_THAT(info.out, HasSubstr(Sha256Hex(old_data_)));
  EXPECT_THAT(info.out, HasSubstr(Sha256Hex(new_data_)));

  Result json = RunCli({"delta", "info", Path("p"), "-o", "json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"codec\": \"match-zstd\""));
  EXPECT_THAT(json.out, HasSubstr("\"new_sha256\": \"" + Sha256Hex(new_data_) + "\""));
  EXPECT_THAT(json.out, HasSubstr("\"new_size_bytes\": " + std::to_string(new_data_.size())));
}

TEST_F(DeltaCliTest, InfoOnBsdiffPatchSaysDigestsAreNotCarried) {
  ASSERT_EQ(
      RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec", "bsdiff40"})
          .code,
      0);
  Result info = RunCli({"-o", "json", "delta", "info", Path("p")});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_THAT(info.out, HasSubstr("\"codec\": \"bsdiff40\""));
  EXPECT_THAT(info.out, HasSubstr("\"new_sha256\": null"));
  EXPECT_THAT(info.out, HasSubstr("\"new_size_bytes\": " + std::to_string(new_data_.size())));
}

TEST_F(DeltaCliTest, DamagedPatchFailsWithOneLineAndNoOutputFile) {
  ASSERT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec",
                    "match-zstd"})
                .code,
            0);
  std::string patch = ReadFile(Path("p"));
  // Flip bytes well inside the payload, past the header.
  for (size_t i = patch.size() / 2; i < patch.size() / 2 + 16; ++i) patch[i] ^= 0x5a;
  WriteFile(Path("p"), patch);
  const std::vector<std::string> before = Entries(dir_);

  Result apply = RunCli({"delta", "apply", Path("old.bin"), Path("p"), Path("out.bin")});
  EXPECT_EQ(apply.code, 1);
  EXPECT_THAT(apply.err, StartsWith("edgefleetctl: delta apply: "));
  EXPECT_EQ(std::count(apply.err.begin(), apply.err.end(), '\n'), 1) << apply.err;
  EXPECT_FALSE(fs::exists(Path("out.bin")));
  EXPECT_EQ(Entries(dir_), before) << "no temporary may be left behind";
}

TEST_F(DeltaCliTest, PatchAgainstTheWrongBaseFailsWithNoOutputFile) {
  ASSERT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec",
                    "match-zstd"})
                .code,
            0);
  WriteFile(Path("other.bin"), Weights(256 * 1024, 99));
  Result apply = RunCli({"delta", "apply", Path("other.bin"), Path("p"), Path("out.bin")});
  EXPECT_EQ(apply.code, 1);
  EXPECT_THAT(apply.err, StartsWith("edgefleetctl: delta apply: "));
  EXPECT_FALSE(fs::exists(Path("out.bin")));
}

TEST_F(DeltaCliTest, AutoSaysSoAndWritesNothingWhenTheFullFileIsSmaller) {
  // A new file of zeros compresses to a few bytes; no patch from random data can beat that.
  WriteFile(Path("zeros.bin"), std::string(1 << 20, '\0'));
  Result diff = RunCli({"delta", "diff", Path("old.bin"), Path("zeros.bin"), Path("p")});
  ASSERT_EQ(diff.code, 0) << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("No patch written"));
  EXPECT_FALSE(fs::exists(Path("p")));

  Result json =
      RunCli({"-o", "json", "delta", "diff", Path("old.bin"), Path("zeros.bin"), Path("p")});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"full_is_smaller\": true"));
  EXPECT_THAT(json.out, HasSubstr("\"patch\": null"));
  EXPECT_FALSE(fs::exists(Path("p")));
}

TEST_F(DeltaCliTest, UsageErrorsExitTwoAndWriteNothing) {
  Result bad_codec =
      RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec", "gzip"});
  EXPECT_EQ(bad_codec.code, 2);
  EXPECT_THAT(bad_codec.err, HasSubstr("gzip"));
  EXPECT_THAT(bad_codec.err, HasSubstr("usage: edgefleetctl delta diff"));
  EXPECT_FALSE(fs::exists(Path("p")));

  EXPECT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("p"), "--time-budget",
                    "soon"})
                .code,
            2);
  EXPECT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin")}).code, 2);
  EXPECT_EQ(RunCli({"delta", "apply", Path("old.bin"), Path("p"), Path("o"), "extra"}).code, 2);
  EXPECT_EQ(RunCli({"delta", "info", Path("p"), "--codec", "tensor"}).code, 2);
  EXPECT_EQ(RunCli({"delta", "frobnicate"}).code, 2);
  EXPECT_EQ(RunCli({"delta"}).code, 2);
  // Naming an input as the patch would replace it.
  EXPECT_EQ(RunCli({"delta", "diff", Path("old.bin"), Path("new.bin"), Path("new.bin")}).code, 2);
  EXPECT_EQ(ReadFile(Path("new.bin")), new_data_);
  EXPECT_FALSE(fs::exists(Path("p")));
}

TEST_F(DeltaCliTest, MissingInputIsAnOperationFailure) {
  Result diff = RunCli({"delta", "diff", Path("nope.bin"), Path("new.bin"), Path("p")});
  EXPECT_EQ(diff.code, 1);
  EXPECT_THAT(diff.err, StartsWith("edgefleetctl: delta diff: "));
  EXPECT_THAT(diff.err, HasSubstr("nope.bin"));
  EXPECT_FALSE(fs::exists(Path("p")));
}

TEST_F(DeltaCliTest, HelpListsTheDeltaCommands) {
  Result help = RunCli({"help"});
  ASSERT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("edgefleetctl delta diff OLD NEW PATCH"));
  EXPECT_THAT(help.out, HasSubstr("edgefleetctl delta apply OLD PATCH OUT"));
  EXPECT_THAT(help.out, HasSubstr("edgefleetctl delta info PATCH"));

  Result delta_help = RunCli({"delta", "--help"});
  EXPECT_EQ(delta_help.code, 0);
  EXPECT_THAT(delta_help.out, HasSubstr("edgefleetctl delta apply OLD PATCH OUT"));
  Result diff_help = RunCli({"delta", "diff", "-h"});
  EXPECT_EQ(diff_help.code, 0);
  EXPECT_THAT(diff_help.out, HasSubstr("--time-budget SECONDS"));
}

// edgefleet-delta is the same commands in a binary of its own: run the real process.
class DeltaBinaryTest : public DeltaCliTest {
 protected:
  Result Run(const std::vector<std::string>& args) {
    const std::string out_log = Path("stdout.log");
    fs::remove(out_log);
    test::Process process;
    process.Spawn(std::string(EDGEFLEET_BIN_DIR) + "/edgefleet-delta", args, {}, out_log);
    const std::optional<int> code = process.Wait(std::chrono::seconds(60));
    EXPECT_TRUE(code.has_value()) << "edgefleet-delta did not finish";
    const std::string log = ReadFile(out_log);
    fs::remove(out_log);
    return {code.value_or(-1), log, log};
  }
};

TEST_F(DeltaBinaryTest, DiffApplyInfoRoundTripAndFailuresExitLikeEdgefleetctl) {
  Result diff =
      Run({"diff", Path("old.bin"), Path("new.bin"), Path("p"), "--codec", "tensor", "-o", "json"});
  ASSERT_EQ(diff.code, 0) << diff.out;
  EXPECT_THAT(diff.out, HasSubstr("\"codec\": \"tensor\""));
  Result apply = Run({"apply", Path("old.bin"), Path("p"), Path("out.bin")});
  ASSERT_EQ(apply.code, 0) << apply.out;
  EXPECT_TRUE(ReadFile(Path("out.bin")) == new_data_);
  Result info = Run({"info", Path("p")});
  EXPECT_EQ(info.code, 0);
  EXPECT_THAT(info.out, HasSubstr(Sha256Hex(new_data_)));

  std::string patch = ReadFile(Path("p"));
  for (size_t i = patch.size() / 2; i < patch.size() / 2 + 16; ++i) patch[i] ^= 0x5a;
  WriteFile(Path("p"), patch);
  fs::remove(Path("out.bin"));
  Result damaged = Run({"apply", Path("old.bin"), Path("p"), Path("out.bin")});
  EXPECT_EQ(damaged.code, 1);
  EXPECT_THAT(damaged.out, StartsWith("edgefleet-delta: apply: "));
  EXPECT_EQ(std::count(damaged.out.begin(), damaged.out.end(), '\n'), 1) << damaged.out;
  EXPECT_FALSE(fs::exists(Path("out.bin")));

  Result usage = Run({"diff", Path("old.bin"), "--codec", "gzip"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_THAT(usage.out, HasSubstr("usage: edgefleet-delta diff"));
  EXPECT_EQ(Run({"--server", "x", "info", Path("p")}).code, 2) << "no admin flags here";
  Result help = Run({"help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("edgefleet-delta apply OLD PATCH OUT"));
}

}  // namespace
}  // namespace edgefleet::cli
