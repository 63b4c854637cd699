// The faults the fault tests inflict on real processes, made with the system's own tools (root
// needed): a network namespace joined to this one by a veth pair and shaped with `tc netem`, a
// small tmpfs mounted over a directory (a disk that fills up), and a private PostgreSQL cluster
// that can be restarted under the server.
#pragma once

#include <string>
#include <vector>

namespace edgefleet::test {

// Runs `binary args...` and waits up to a minute; returns its exit code (-1 when it hung) and
// leaves its output in `log` (appended) when given.
int RunTool(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log = "");

// Whether this process may create network namespaces, shape links and mount file systems
// (root, with `ip`, `tc` and the netem qdisc available). Says why not in `why`.
bool CanInjectSystemFaults(std::string* why);

// A network namespace with one end of a veth pair in it; the other end stays here. Each end has
// an address of a random 10.x.y.0/30 network. Removed (with the pair) on destruction.
class VethNamespace {
 public:
  // Throws std::runtime_error when `ip` fails.
  VethNamespace();
  ~VethNamespace();
  VethNamespace(const VethNamespace&) = delete;
  VethNamespace& operator=(const VethNamespace&) = delete;

  const std::string& name() const { return name_; }
  const std::string& host_address() const { return host_address_; }
  // The command that runs a program inside the namespace (a launcher for AgentHarness).
  std::vector<std::string> Launcher() const;
  // Shapes both directions to `rate` (tc syntax, e.g. "1mbit") with `loss_percent` random loss
  // and `delay_ms` delay: with tc netem where the kernel has it; else rate with tc tbf, loss with
  // an nftables rule inside the namespace, and no delay (delay_applied() says which). False when
  // neither works.
  bool Shape(const std::string& rate, int loss_percent, int delay_ms);
  // Back to an unshaped link.
  void Unshape();
  bool delay_applied() const { return delay_applied_; }
  // Takes the link down (both ends lose carrier) or brings it up again.
  bool SetLinkUp(bool up);

 private:
  std::string name_;
  std::string host_if_;
  std::string ns_if_;
  std::string host_address_;
  std::string ns_address_;
  bool delay_applied_ = false;
};

// A tmpfs of `size_bytes` mounted over `dir` (created when missing); unmounted on destruction.
class SmallDisk {
 public:
  // Throws std::runtime_error when the mount fails.
  SmallDisk(std::string dir, uint64_t size_bytes);
  ~SmallDisk();
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

 private:
  std::string dir_;
};

// A PostgreSQL 15 cluster of its own in `dir` (scripts/lib/postgres.sh), stopped on destruction.
class PrivatePostgres {
 public:
  // Throws std::runtime_error when it does not start.
  explicit PrivatePostgres(std::string dir);
  ~PrivatePostgres();
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  // postgresql://...: the cluster's "postgres" database.
  const std::string& url() const { return url_; }
  // `pg_ctl restart -m fast`: every connection is cut, the cluster is back when it returns.
  bool Restart();

 private:
  int Script(const std::string& commands) const;

  std::string dir_;
  std::string url_;
};

}  // namespace edgefleet::test
