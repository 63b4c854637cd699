// Replays every input kept in tests/fuzz/regressions/<decoder>/ (inputs that once crashed or hung
// a fuzzer, plus hand-made hostile patches) through Apply: each must fail cleanly or succeed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "tests/fuzz/fuzz_targets.h"

namespace edgefleet::delta::fuzz {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs every file under regressions/<decoder>; returns how many there were.
int Replay(const std::string& decoder, absl::Status (*run)(std::string_view)) {
  const fs::path dir = fs::path(EDGEFLEET_SOURCE_DIR) / "tests/fuzz/regressions" / decoder;
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

}  // namespace
}  // namespace edgefleet::delta::fuzz
