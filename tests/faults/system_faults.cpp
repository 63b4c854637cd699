#include "tests/faults/system_faults.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include "tests/support/process.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kTc[] = "/usr/sbin/tc";
constexpr char kNft[] = "/usr/sbin/nft";

std::string Hex(uint32_t v, int digits) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (int i = digits - 1; i >= 0; --i) out += kDigits[(v >> (4 * i)) & 0xf];
  return out;
}

void MustRun(const std::string& binary, const std::vector<std::string>& args) {
  const std::string log = fs::temp_directory_path() / ("edgefleet-tool-" + Hex(getpid(), 8));
  const int code = RunTool(binary, args, log);
  const std::string out = ReadFile(log).value_or("");
  std::error_code ec;
  fs::remove(log, ec);
  if (code != 0) {
    std::string line = binary;
    for (const auto& a : args) line += " " + a;
    throw std::runtime_error(line + " exited with " + std::to_string(code) + ": " + out);
  }
}

}  // namespace

int RunTool(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log) {
  Process p;
  p.Spawn(binary, args, {}, log);
  const int code = p.Wait(std::chrono::seconds(60)).value_or(-1);
  p.Kill();
  return code;
}

bool CanInjectSystemFaults(std::string* why) {
  if (geteuid() != 0) {
    *why = "needs root (network namespaces, tc netem, tmpfs mounts)";
    return false;
  }
  for (const char* tool : {kIp, kTc}) {
    if (access(tool, X_OK) != 0) {
      *why = std::string(tool) + " is missing (iproute2)";
      return false;
    }
  }
  return true;
}

VethNamespace::VethNamespace() {
  std::random_device rd;
  const uint32_t id = rd();
  name_ = "ef-" + Hex(id, 8);
  host_if_ = "efh" + Hex(id, 8);
  ns_if_ = "efn" + Hex(id, 8);
  // 10.x.y.z/30 with z a multiple of 4: .1 here, .2 in the namespace.
  const std::string net =
      "10." + std::to_string(64 + (id >> 26)) + "." + std::to_string((id >> 18) & 0xff) + ".";
  const unsigned base = ((id >> 10) & 0x3f) * 4;
  host_address_ = net + std::to_string(base + 1);
  ns_address_ = net + std::to_string(base + 2);
  MustRun(kIp, {"netns", "add", name_});
  try {
    MustRun(kIp, {"link", "add", host_if_, "type", "veth", "peer", "name", ns_if_, "netns", name_});
    MustRun(kIp, {"addr", "add", host_address_ + "/30", "dev", host_if_});
    MustRun(kIp, {"link", "set", host_if_, "up"});
    MustRun(kIp, {"-n", name_, "addr", "add", ns_address_ + "/30", "dev", ns_if_});
    MustRun(kIp, {"-n", name_, "link", "set", ns_if_, "up"});
    MustRun(kIp, {"-n", name_, "link", "set", "lo", "up"});
  } catch (...) {
    RunTool(kIp, {"link", "del", host_if_});
    RunTool(kIp, {"netns", "del", name_});
    throw;
  }
}

VethNamespace::~VethNamespace() {
  // Deleting one end deletes the pair; the namespace goes once nothing runs in it.
  RunTool(kIp, {"link", "del", host_if_});
  RunTool(kIp, {"netns", "del", name_});
}

std::vector<std::string> VethNamespace::Launcher() const { return {kIp, "netns", "exec", name_}; }

bool VethNamespace::Shape(const std::string& rate, int loss_percent, int delay_ms) {
  Unshape();
  const std::string loss = std::to_string(loss_percent) + "%";
  const std::string delay = std::to_string(delay_ms) + "ms";
  if (RunTool(kTc, {"qdisc", "replace", "dev", host_if_, "root", "netem", "rate", rate, "loss",
                    loss, "delay", delay}) == 0 &&
      RunTool(kTc, {"-n", name_, "qdisc", "replace", "dev", ns_if_, "root", "netem", "rate", rate,
                    "loss", loss, "delay", delay}) == 0) {
    delay_applied_ = true;
    return true;
  }
  // Kernels without sch_netem (some VM kernels): a token bucket for the rate, nftables for loss.
  delay_applied_ = false;
  for (const auto& [ns, dev] : {std::pair<bool, std::string>{false, host_if_}, {true, ns_if_}}) {
    std::vector<std::string> args = {"qdisc", "replace", "dev",   dev,      "root",    "tbf",
                                     "rate",  rate,      "burst", "32kbit", "latency", "400ms"};
    if (ns) args.insert(args.begin(), {"-n", name_});
    if (RunTool(kTc, args) != 0) return false;
  }
  // meta random is uniform over 32 bits: drop when it falls under loss_percent of them.
  const std::string threshold = std::to_string((uint64_t{1} << 32) / 100 * loss_percent);
  const std::string rules =
      "table inet edgefleet_faults {\n"
      "  chain in { type filter hook input priority 0; meta random < " +
      threshold +
      " drop; }\n"
      "  chain out { type filter hook output priority 0; meta random < " +
      threshold +
      " drop; }\n"
      "}\n";
  const std::string file = fs::temp_directory_path() / ("edgefleet-nft-" + name_);
  {
    std::ofstream out(file);
    out << rules;
  }
  const int code = RunTool(kIp, {"netns", "exec", name_, kNft, "-f", file});
  std::error_code ec;
  fs::remove(file, ec);
  return code == 0;
}

void VethNamespace::Unshape() {
  RunTool(kTc, {"qdisc", "del", "dev", host_if_, "root"});
  RunTool(kTc, {"-n", name_, "qdisc", "del", "dev", ns_if_, "root"});
  RunTool(kIp, {"netns", "exec", name_, kNft, "delete", "table", "inet", "edgefleet_faults"});
}

bool VethNamespace::SetLinkUp(bool up) {
  return RunTool(kIp, {"link", "set", host_if_, up ? "up" : "down"}) == 0;
}

SmallDisk::SmallDisk(std::string dir, uint64_t size_bytes) : dir_(std::move(dir)) {
  fs::create_directories(dir_);
  MustRun("/usr/bin/mount",
          {"-t", "tmpfs", "-o", "size=" + std::to_string(size_bytes), "tmpfs", dir_});
}

SmallDisk::~SmallDisk() {
  // Lazy: a process that still has a file open there cannot keep the mount alive.
  RunTool("/usr/bin/umount", {"-l", dir_});
}

PrivatePostgres::PrivatePostgres(std::string dir) : dir_(std::move(dir)) {
  fs::create_directories(fs::path(dir_).parent_path());
  if (Script("pg_start \"$1\"") != 0) {
    throw std::runtime_error("PostgreSQL did not start: " + ReadFile(dir_ + ".log").value_or(""));
  }
  auto port = ReadFile(dir_ + "/port");
  if (!port) throw std::runtime_error("PostgreSQL wrote no port file in " + dir_);
  while (!port->empty() && (port->back() == '\n' || port->back() == ' ')) port->pop_back();
  url_ = "postgresql://postgres@127.0.0.1:" + *port + "/postgres";
}

PrivatePostgres::~PrivatePostgres() { Script("pg_stop \"$1\""); }

bool PrivatePostgres::Restart() {
  return Script("pg_as_owner \"$PG_BIN/pg_ctl\" -D \"$1\" -m fast -w -t 60 restart") == 0;
}

int PrivatePostgres::Script(const std::string& commands) const {
  return RunTool(
      "/bin/bash",
      {"-c", "source \"" EDGEFLEET_SOURCE_DIR "/scripts/lib/postgres.sh\" && " + commands, "pg",
       dir_},
      dir_ + ".log");
}

}  // namespace edgefleet::test
