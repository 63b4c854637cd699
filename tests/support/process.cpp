#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Process::~Process() { Kill(); }

void Process::Spawn(const std::string& binary, const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env, const std::string& log_file,
                    const std::string& err_file) {
  if (pid_ > 0 && IsRunning()) throw std::runtime_error("process already running: " + binary);
  pid_ = -1;
  exit_code_.reset();

  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    if (name.rfind("EDGEFLEET_", 0) == 0 || env.count(name) > 0) continue;
    env_storage.push_back(std::move(entry));
  }
  for (const auto& [name, value] : env) env_storage.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int log_fd = ::open(log_file.empty() ? "/dev/null" : log_file.c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    throw std::runtime_error("cannot open log file " + log_file + ": " + std::strerror(errno));
  }
  int err_fd = log_fd;
  if (!err_file.empty()) {
    err_fd = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) {
      ::close(log_fd);
      throw std::runtime_error("cannot open log file " + err_file + ": " + std::strerror(errno));
    }
  }
  // Closes what the parent keeps of the child's output files.
  auto close_logs = [&] {
    ::close(log_fd);
    if (err_fd != log_fd) ::close(err_fd);
  };
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  // The child writes errno here when execve fails; a successful exec closes it (CLOEXEC).
  int exec_pipe[2];
  if (null_fd < 0 || ::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    close_logs();
    if (null_fd >= 0) ::close(null_fd);
    throw std::runtime_error(std::string("cannot set up child process: ") + std::strerror(errno));
  }

  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    close_logs();
    ::close(null_fd);
    ::close(exec_pipe[0]);
    ::close(exec_pipe[1]);
    throw std::runtime_error(std::string("fork failed: ") + std::strerror(err));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    // Test binaries may block signals (gRPC threads); the child starts with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(err_fd, 2);
    ::execve(binary.c_str(), argv.data(), envp.data());
    int err = errno;
    (void)!::write(exec_pipe[1], &err, sizeof err);
    ::_exit(127);
  }
  // Also set the group from the parent so a Kill() right after Spawn() cannot miss it.
  ::setpgid(pid, pid);
  close_logs();
  ::close(null_fd);
  ::close(exec_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  pid_ = pid;
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    Reap(true);
    pid_ = -1;
    throw std::runtime_error("cannot execute " + binary + ": " + std::strerror(child_errno));
  }
}

std::optional<int> Process::Reap(bool block) {
  if (pid_ <= 0 || exit_code_) return exit_code_;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) exit_code_ = DecodeWaitStatus(status);
  if (r < 0) exit_code_ = -1;  // not our child any more: treat as gone
  return exit_code_;
}

bool Process::IsRunning() { return pid_ > 0 && !Reap(false).has_value(); }

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_code_;
  WaitFor([this] { return !IsRunning(); }, timeout, std::chrono::milliseconds(10));
  return Reap(false);
}

std::optional<int> Process::Terminate(std::chrono::milliseconds grace) {
  if (IsRunning()) {
    ::kill(pid_, SIGTERM);
    if (!Wait(grace)) Kill();
  }
  return exit_code_;
}

void Process::Kill() {
  // Once reaped, the pid may belong to someone else: never signal it again.
  if (pid_ <= 0 || exit_code_) return;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  Reap(true);
}

bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (predicate()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return predicate();
    std::this_thread::sleep_for(poll);
  }
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/ef-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  path_ = buffer.data();
}

TempDir::~TempDir() {
  if (std::getenv("EDGEFLEET_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::Sub(const std::string& name) const { return path_ + "/" + name; }

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string ReadFileTail(const std::string& path, size_t max_bytes) {
  auto text = ReadFile(path);
  if (!text) return "";
  if (text->size() <= max_bytes) return *text;
  return "..." + text->substr(text->size() - max_bytes);
}

std::optional<Ports> ReadPortsFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text) return std::nullopt;
  Ports ports;
  const std::pair<const char*, int*> fields[] = {{"device", &ports.device},
                                                 {"admin_grpc", &ports.admin_grpc},
                                                 {"admin_http", &ports.admin_http}};
  for (const auto& [name, out] : fields) {
    std::smatch m;
    std::regex re(std::string("\"") + name + "\"\\s*:\\s*([0-9]+)");
    if (!std::regex_search(*text, m, re)) return std::nullopt;
    *out = std::stoi(m[1].str());
    if (*out <= 0) return std::nullopt;
  }
  return ports;
}

}  // namespace edgefleet::test
