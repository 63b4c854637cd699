// A TCP proxy on loopback that can slow the bytes flowing back from the upstream server to the
// client, as an attacker on the path (or a hostile mirror) can: it sees only TLS records, so it
// cannot forge anything, but it decides how fast they arrive. Used to show the agent's
// slow-retrieval defence on real processes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::test {

class ThrottlingProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards every connection to `upstream_port` on
  // 127.0.0.1. Throws std::runtime_error when it cannot listen.
  explicit ThrottlingProxy(int upstream_port);
  // Closes the listener and every forwarded connection.
  ~ThrottlingProxy();

  ThrottlingProxy(const ThrottlingProxy&) = delete;
  ThrottlingProxy& operator=(const ThrottlingProxy&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Upstream-to-client bytes per second on every connection; 0 forwards at full speed. Takes
  // effect on open connections at once.
  void set_downstream_bytes_per_second(uint64_t rate) { rate_ = rate; }
  // Bytes forwarded from upstream to clients so far.
  uint64_t downstream_bytes() const { return downstream_bytes_; }

 private:
  void AcceptLoop();
  // Copies `from` to `to` until either side closes; `downstream` applies the rate limit.
  void Pump(int from, int to, bool downstream);

  int listen_fd_ = -1;
  int port_ = 0;
  int upstream_port_;
  std::atomic<uint64_t> rate_{0};
  std::atomic<uint64_t> downstream_bytes_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> fds_;  // every open socket, shut down at destruction
  std::vector<std::thread> pumps_;
};

}  // namespace edgefleet::test
