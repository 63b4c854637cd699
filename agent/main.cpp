// edgefleet-agent: parses configuration, serves committed models, enrolls and checks in until
// SIGINT/SIGTERM.
#include <csignal>
#include <iostream>
#include <thread>

#include "agent/app/agent.h"
#include "agent/engine/opencv_engine.h"
#include "common/config/config.h"
#include "common/core/logging.h"
#include "common/core/process.h"

int main(int argc, char** argv) {
  edgefleet::DisableMutexDeadlockDetection();
  std::vector<std::string> args(argv + 1, argv + argc);
  edgefleet::v1::AgentConfig config;
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: edgefleet-agent [flags]\n"
              << edgefleet::config::Usage(edgefleet::agent::Agent::WithDefaults(config));
    return 0;
  }
  if (auto s = edgefleet::config::Load(args, edgefleet::config::ProcessEnv(), &config); !s.ok()) {
    std::cerr << "edgefleet-agent: " << s.message() << "\n";
    return 2;
  }
  config = edgefleet::agent::Agent::WithDefaults(config);
  edgefleet::SetLogLevel(config.log_level());

  // Signals are taken by one thread with sigwait so shutdown runs outside a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  edgefleet::SystemClock clock;
  auto agent =
      edgefleet::agent::Agent::Start(config, clock, edgefleet::agent::MakeOpenCvEngineFactory());
  if (!agent.ok()) {
    std::cerr << "edgefleet-agent: cannot start: " << agent.status().message() << "\n";
    return 1;
  }
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    edgefleet::Logger("agent")->info("signal {} received, stopping", signal);
    (*agent)->Stop();
  });
  (*agent)->Run();  // returns only after the waiter has called Stop()
  waiter.join();
  return 0;
}
