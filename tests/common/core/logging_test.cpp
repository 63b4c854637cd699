#include "common/core/logging.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace edgefleet {
namespace {

TEST(EscapeForLogTest, PrintableTextIsUnchanged) {
  EXPECT_EQ(EscapeForLog("model=detector version=1.2 detail=load failed: shape [1,4]"),
            "model=detector version=1.2 detail=load failed: shape [1,4]");
  EXPECT_EQ(EscapeForLog(""), "");
}

TEST(EscapeForLogTest, ControlCharactersAndBackslashCannotForgeALine) {
  const std::string forged =
      "boom\n2026-12-01T00:00:00.000 info [admin] model pushed model=evil version=6";
  const std::string escaped = EscapeForLog(forged);
  EXPECT_EQ(escaped.find('\n'), std::string::npos);
  EXPECT_EQ(escaped,
            "boom\\n2026-12-01T00:00:00.000 info [admin] model pushed model=evil version=6");
  EXPECT_EQ(EscapeForLog("a\rb\tc"), "a\\rb\\tc");
  // A literal backslash-n stays distinguishable from an escaped newline.
  EXPECT_EQ(EscapeForLog("a\\nb"), "a\\\\nb");
  constexpr char kRaw[] = "nul\0bel\a esc\x1b[2J del\x7f";
  EXPECT_EQ(EscapeForLog(std::string(kRaw, sizeof kRaw - 1)),
            "nul\\x00bel\\x07 esc\\x1b[2J del\\x7f");
  // Bytes outside ASCII (look-alike or direction-changing Unicode, invalid UTF-8) are shown.
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9 \xe2\x80\xa8"), "caf\\xc3\\xa9 \\xe2\\x80\\xa8");
}

TEST(LoggerTest, ThreadsAskingForANewComponentAtOnceShareOneLogger) {
  // spdlog refuses to register a name twice; a component's first use from several threads at
  // once (the patch workers starting together) must not throw.
  for (int round = 0; round < 20; ++round) {
    const std::string name = "race-" + std::to_string(round);
    std::vector<std::shared_ptr<spdlog::logger>> got(8);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t) {
      threads.emplace_back([&, t] { got[t] = Logger(name); });
    }
    for (std::thread& t : threads) t.join();
    for (const auto& logger : got) EXPECT_EQ(logger, got[0]) << name;
  }
}

}  // namespace
}  // namespace edgefleet
