// edgefleet-server: parses configuration, starts the control plane, stops on SIGINT/SIGTERM.
#include <csignal>
#include <iostream>
#include <thread>

#include "common/config/config.h"
#include "common/core/logging.h"
#include "common/core/process.h"
#include "server/app/server.h"

namespace {

std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
  edgefleet::DisableMutexDeadlockDetection();
  std::vector<std::string> args(argv + 1, argv + argc);
  edgefleet::v1::ServerConfig config;
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: edgefleet-server [flags]\n"
              << edgefleet::config::Usage(edgefleet::server::Server::WithDefaults(config));
    return 0;
  }
  if (auto s = edgefleet::config::Load(args, edgefleet::config::ProcessEnv(), &config); !s.ok()) {
    std::cerr << "edgefleet-server: " << s.message() << "\n";
    return 2;
  }
  config = edgefleet::server::Server::WithDefaults(config);
  edgefleet::SetLogLevel(config.log_level());

  edgefleet::SystemClock clock;
  auto server = edgefleet::server::Server::Start(config, clock);
  if (!server.ok()) {
    std::cerr << "edgefleet-server: cannot start: " << server.status().message() << "\n";
    return 1;
  }
  if (std::string token = (*server)->generated_admin_token(); !token.empty()) {
    std::cout << "admin token (shown once, store it): " << token << std::endl;
  }

  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  edgefleet::Logger("server")->info("shutting down");
  (*server)->Shutdown();
  return 0;
}
