// Child processes for end-to-end tests: spawns a binary in its own process group with its output
// in a log file, and guarantees it is gone when the test ends (the destructor kills it), plus the
// polling and scratch-directory helpers those tests need.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace edgefleet::test {

class Process {
 public:
  Process() = default;
  // Kills the whole process group if it still runs, so a failed test leaves nothing behind.
  ~Process();

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts `binary` with `args` (argv[0] is added) via fork/execve in a new process group.
  // The child inherits this process's environment without EDGEFLEET_* variables (so the
  // developer's shell cannot configure it), plus `env`. stdout and stderr are appended to
  // `log_file` (/dev/null when empty), stderr to `err_file` instead when that is given (a CLI's
  // JSON answer apart from its messages). Throws std::runtime_error when the binary cannot be
  // executed or a process is already running.
  void Spawn(const std::string& binary, const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env = {}, const std::string& log_file = "",
             const std::string& err_file = "");

  // True while the child has not exited (reaps it when it has).
  bool IsRunning();

  // Waits up to `timeout` for the child to exit. Returns its exit code, 128 + signal number when
  // a signal ended it, or nullopt when it still runs.
  std::optional<int> Wait(std::chrono::milliseconds timeout);

  // SIGTERM, then waits up to `grace`, then SIGKILL. Returns how it ended (see Wait).
  std::optional<int> Terminate(std::chrono::milliseconds grace = std::chrono::seconds(10));

  // SIGKILL to the process group, and reaps the child.
  void Kill();

  pid_t pid() const { return pid_; }

 private:
  std::optional<int> Reap(bool block);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// Polls `predicate` every `poll` until it is true or `timeout` passes; returns its last answer.
// Tests wait for observable readiness this way instead of sleeping for ordering.
bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction unless
// EDGEFLEET_KEEP_TEST_DIRS is set (for post-mortems). Paths stay short: Unix socket paths
// inside it must fit in 108 bytes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string Sub(const std::string& name) const;

 private:
  std::string path_;
};

// Whole file contents, or nullopt when it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);
// The last `max_bytes` of a file ("" when unreadable): log excerpts for failure messages.
std::string ReadFileTail(const std::string& path, size_t max_bytes = 4000);

struct Ports {
  int device = 0;
  int admin_grpc = 0;
  int admin_http = 0;
};

// Parses the server's ports file ({"device":P,"admin_grpc":P,"admin_http":P}); nullopt while it
// is missing or incomplete.
std::optional<Ports> ReadPortsFile(const std::string& path);

}  // namespace edgefleet::test
