// Replays every input kept in tests/fuzz/regressions/<target>/ (inputs that once crashed or hung
// a fuzzer, plus hand-made hostile ones) through the fuzz targets' entry points: each must fail
// cleanly or succeed. A broken invariant aborts (input_targets.h), failing the test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/fuzz/input_targets.h"

namespace edgefleet::delta::fuzz {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs every file under regressions/<target>; returns how many there were.
int Replay(const std::string& target, absl::Status (*run)(std::string_view)) {
  const fs::path dir = fs::path(EDGEFLEET_SOURCE_DIR) / "tests/fuzz/regressions" / target;
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
    SCOPED_TRACE(entry.path().string());
    const absl::Status s = run(ReadFile(entry.path()));
    // A refusal must say why; reaching this line at all means no crash.
    if (!s.ok()) {
      EXPECT_FALSE(s.message().empty());
    }
    ++count;
  }
  return count;
}

TEST(FuzzRegressions, Bsdiff40InputsFailCleanly) { EXPECT_GT(Replay("bsdiff40", RunBsdiff40), 0); }

TEST(FuzzRegressions, ContainerInputsFailCleanly) {
  EXPECT_GT(Replay("container", RunContainer), 0);
}

TEST(FuzzRegressions, TensorInputsFailCleanly) { EXPECT_GT(Replay("tensor", RunTensor), 0); }

TEST(FuzzRegressions, ManifestInputsFailCleanly) {
  EXPECT_GT(Replay("manifest", edgefleet::fuzz::RunManifest), 0);
}

TEST(FuzzRegressions, OnnxWalkerInputsFailCleanly) {
  EXPECT_GT(Replay("onnx_walker", edgefleet::fuzz::RunOnnxWalker), 0);
}

TEST(FuzzRegressions, RestJsonInputsFailCleanly) {
  EXPECT_GT(Replay("rest_json", edgefleet::fuzz::RunRestJson), 0);
}

TEST(FuzzRegressions, ConfigInputsFailCleanly) {
  EXPECT_GT(Replay("config", edgefleet::fuzz::RunConfig), 0);
}

// The seeds are valid inputs: every one the targets refuse must be refused for a reason, and
// the generated manifest seeds must all verify (they are the harness's own signed metadata).
TEST(FuzzRegressions, ManifestSeedsVerify) {
  for (const auto& [name, bytes] : edgefleet::fuzz::ManifestSeeds()) {
    EXPECT_TRUE(edgefleet::fuzz::RunManifest(bytes).ok()) << name;
  }
}

}  // namespace
}  // namespace edgefleet::delta::fuzz
