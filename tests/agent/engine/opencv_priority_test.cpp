// OpenCV's worker threads must keep the priority of inference even when the first model to run
// is warmed up on the agent's lowered-priority update thread (a device that starts with nothing
// to serve): a thread inherits the priority of the thread that starts it.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "agent/engine/opencv_engine.h"

namespace edgefleet::agent {
namespace {

// Nice value of every thread of this process, by thread id.
std::map<int, int> NiceByThread() {
  std::map<int, int> nice;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after "(comm)": state is field 3, nice is field 19.
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
    }
    nice[std::stoi(entry.path().filename().string())] = std::stoi(field);
  }
  return nice;
}

TEST(OpenCvPriorityTest, WorkersKeepTheFactoryMakersPriorityWhenALowPriorityThreadRunsFirst) {
  // Made here, on a thread at normal priority, as the agent's main() does.
  std::unique_ptr<EngineFactory> factory = MakeOpenCvEngineFactory();
  const int base = getpriority(PRIO_PROCESS, 0);
  int update_thread = 0;
  bool ran = false;
  // The update thread: lowered, then it loads and runs the first model of the process.
  std::thread update([&] {
    update_thread = static_cast<int>(syscall(SYS_gettid));
    ASSERT_EQ(setpriority(PRIO_PROCESS, static_cast<id_t>(update_thread), 19), 0);
    auto engine = factory->Load(std::string(EDGEFLEET_TEST_DATA_DIR) + "/classifier_v1.onnx");
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto outputs = (*engine)->Run({{"input", {1, 4}, {0.1f, 0.2f, 0.3f, 0.4f}}}, {});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    ran = true;
    // Still alive while the threads are looked at, so its own nice is known.
    for (const auto& [tid, nice] : NiceByThread()) {
      if (tid == update_thread) continue;
      EXPECT_EQ(nice, base) << "thread " << tid << " inherited the update thread's priority";
    }
  });
  update.join();
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace edgefleet::agent
