#include "bench/swap/swap_bench.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <istream>
#include <memory>
#include <mutex>
#include <ostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/api/inference_service.h"
#include "agent/engine/opencv_engine.h"
#include "agent/serving/model_host.h"
#include "agent/serving/thread_priority.h"
#include "edgefleet/v1/inference.grpc.pb.h"
#include "grpcpp/grpcpp.h"

extern char** environ;

namespace edgefleet::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kVersions[2] = {"1", "2"};
// Answers are compared with what the bench computes itself from the same file; the engine is the
// same code on the same machine, so only a different model can move them by more than this.
constexpr float kAnswerTolerance = 1e-5f;

v1::ModelVersion Metadata(const HostOptions& o, int which) {
  v1::ModelVersion m;
  m.set_model_name(o.model_name);
  m.set_version(kVersions[which]);
  v1::TensorSpec* input = m.add_inputs();
  input->set_name(o.input_name);
  input->mutable_shape()->Add(o.input_shape.begin(), o.input_shape.end());
  return m;
}

// The request every client sends: deterministic values in [-0.75, 0.75].
agent::TensorData SampleInput(const HostOptions& o) {
  agent::TensorData t{o.input_name, o.input_shape, {}};
  size_t count = 1;
  for (int64_t d : o.input_shape) count *= static_cast<size_t>(d);
  for (size_t i = 0; i < count; ++i) t.data.push_back(static_cast<float>(i % 7) * 0.25f - 0.75f);
  return t;
}

// What Updater::Activate does for a verified, staged file: load into a new engine, warm up, flip.
// The durable commit in between (SQLite, fsync) is the updater's and is not part of this bench.
// `alive` counts the engines swapped in that still exist (a counter, not a list, so that the
// bookkeeping does not grow the heap the bench measures).
absl::StatusOr<double> Activate(agent::EngineFactory& engines, agent::ModelHost& host,
                                const HostOptions& o, int which,
                                const std::shared_ptr<std::atomic<int64_t>>& alive) {
  const std::string& path = which == 0 ? o.model_a : o.model_b;
  const Clock::time_point start = Clock::now();
  auto engine = engines.Load(path);
  if (!engine.ok())
    return absl::Status(engine.status().code(),
                        absl::StrCat("load ", path, ": ", engine.status().message()));
  v1::ModelVersion metadata = Metadata(o, which);
  if (auto s = agent::WarmUp(**engine, metadata); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("warm up ", path, ": ", s.message()));
  }
  ++*alive;
  std::shared_ptr<agent::InferenceEngine> shared(engine->release(),
                                                 [alive](agent::InferenceEngine* e) {
                                                   delete e;
                                                   --*alive;
                                                 });
  host.Swap(std::make_shared<agent::ServingModel>(
      agent::ServingModel{o.model_name, kVersions[which], std::move(metadata), std::move(shared),
                          /*observer=*/nullptr}));
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t ReadRssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kib = 0;
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) return kib;
    }
  }
  return -1;
}

// The host child process, with pipes to its stdin and from its stdout; killed if still running.
class HostProcess {
 public:
  ~HostProcess() {
    if (to_host_ >= 0) close(to_host_);
    if (from_host_ != nullptr) fclose(from_host_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Runs `binary` with `argv` (argv[0] included), so that ps names the host even when `binary`
  // is /proc/self/exe.
  absl::Status Spawn(const std::string& binary, const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    to_host_ = in[1];
    from_host_ = fdopen(out[0], "r");
    if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", binary, ": ", strerror(rc)));
    pid_ = pid;
    return absl::OkStatus();
  }

  absl::Status Send(const std::string& line) {
    const std::string data = line + "\n";
    if (write(to_host_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      return absl::UnavailableError(
          absl::StrCat("host stopped taking commands: ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  // The host's next line, without its newline; an "error ..." line becomes the status.
  absl::StatusOr<std::string> Receive() {
    char* buffer = nullptr;
    size_t capacity = 0;
    ssize_t n = getline(&buffer, &capacity, from_host_);
    std::string line = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
    free(buffer);
    if (n <= 0) return absl::UnavailableError("host exited (see its stderr above)");
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (line.rfind("error ", 0) == 0)
      return absl::InternalError(absl::StrCat("host: ", line.substr(6)));
    return line;
  }

  // Asks the host to stop and reaps it.
  absl::Status Quit() {
    if (auto s = Send("quit"); !s.ok()) return s;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrCat("host ended with status ", status));
    }
    return absl::OkStatus();
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int to_host_ = -1;
  FILE* from_host_ = nullptr;
};

enum Phase : int { kWarmUp = 0, kSteady, kSwapping, kStopped, kPhases };

struct ClientResult {
  std::vector<float> latency_us[kPhases];
  uint64_t requests = 0;
  uint64_t failed = 0;
  uint64_t wrong = 0;
  uint64_t by_version[2] = {};
  std::string first_error;
};

bool SameAnswer(const v1::PredictResponse& response, const std::vector<float>& expected) {
  if (response.outputs_size() != 1) return false;
  const auto& data = response.outputs(0).data();
  if (static_cast<size_t>(data.size()) != expected.size()) return false;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!(std::fabs(data[static_cast<int>(i)] - expected[i]) <= kAnswerTolerance)) return false;
  }
  return true;
}

void ClientLoop(const std::string& socket_path, const v1::PredictRequest& request,
                const std::vector<float> (&expected)[2], const std::atomic<int>& phase,
                ClientResult& result) {
  // One channel per client, as separate applications on a device would have.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = v1::InferenceService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("unix:", socket_path), grpc::InsecureChannelCredentials(), args));
  for (int p = phase.load(); p != kStopped; p = phase.load()) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PredictResponse response;
    const Clock::time_point start = Clock::now();
    grpc::Status status = stub->Predict(&context, request, &response);
    const float us = std::chrono::duration<float, std::micro>(Clock::now() - start).count();
    ++result.requests;
    result.latency_us[p].push_back(us);
    if (!status.ok()) {
      if (result.failed++ == 0) {
        result.first_error = absl::StrCat(status.error_code(), ": ", status.error_message());
      }
      continue;
    }
    const int which = response.version() == kVersions[0]   ? 0
                      : response.version() == kVersions[1] ? 1
                                                           : -1;
    if (which >= 0) ++result.by_version[which];
    if (which < 0 || !SameAnswer(response, expected[which])) {
      if (result.wrong++ == 0 && result.first_error.empty()) {
        result.first_error = absl::StrCat("wrong answer from version '", response.version(), "'");
      }
    }
  }
}

LatencySummary Summarize(std::vector<float> us, double seconds) {
  LatencySummary s;
  s.calls = us.size();
  s.seconds = seconds;
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) {
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    size_t index = static_cast<size_t>(std::ceil(q * static_cast<double>(us.size())));
    return static_cast<double>(us[std::clamp<size_t>(index, 1, us.size()) - 1]) / 1000.0;
  };
  s.p50_ms = rank(0.50);
  s.p99_ms = rank(0.99);
  s.max_ms = static_cast<double>(us.back()) / 1000.0;
  return s;
}

// Sleeps for a phase of the bench; the clients run meanwhile.
void Hold(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, seconds)));
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string LatencyJson(const LatencySummary& s) {
  return absl::StrFormat(
      R"({"calls": %d, "seconds": %.3f, "calls_per_second": %.1f, "p50_ms": %.4f, "p99_ms": %.4f, "max_ms": %.4f})",
      s.calls, s.seconds, s.calls_per_second(), s.p50_ms, s.p99_ms, s.max_ms);
}

std::string LatencyLine(const char* name, const LatencySummary& s) {
  return absl::StrFormat("  %-14s %9d calls  %8.0f/s  p50 %7.3f ms  p99 %7.3f ms  max %8.3f ms\n",
                         name, s.calls, s.calls_per_second(), s.p50_ms, s.p99_ms, s.max_ms);
}

}  // namespace

int RunSwapHost(const HostOptions& options, std::istream& in, std::ostream& out) {
  std::unique_ptr<agent::EngineFactory> engines = agent::MakeOpenCvEngineFactory();
  agent::ModelHost host;
  auto alive = std::make_shared<std::atomic<int64_t>>(0);
  if (auto first = Activate(*engines, host, options, 0, alive); !first.ok()) {
    out << "error " << first.status().message() << std::endl;
    return 1;
  }
  // The local API as the agent serves it (Agent::StartLocalApi).
  std::error_code ec;
  fs::remove(options.socket_path, ec);
  agent::InferenceGrpcService service(host);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", options.socket_path),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    out << "error cannot listen on " << options.socket_path << std::endl;
    return 1;
  }
  // From here this thread does what the agent's update thread does, at its priority (the
  // inference threads and OpenCV's workers started above keep theirs).
  if (options.update_nice > 0) {
    if (auto s = agent::LowerThisThreadPriority(options.update_nice); !s.ok()) {
      out << "error " << s.message() << std::endl;
      return 1;
    }
  }
  out << "ready " << getpid() << std::endl;

  int serving = 0;
  int rc = 0;
  for (std::string line; std::getline(in, line) && line != "quit";) {
    if (line == "heap") {
      // Bytes malloc has handed out and not had back, over all arenas: a leak grows this, memory
      // the allocator keeps after a free only grows RSS.
      const struct mallinfo2 info = mallinfo2();
      out << "heap " << info.uordblks + info.hblkhd << " " << alive->load() << std::endl;
      continue;
    }
    int count = 0;
    if (line.rfind("swap ", 0) != 0 || !absl::SimpleAtoi(line.substr(5), &count) || count < 0) {
      out << "error unknown command '" << line << "'" << std::endl;
      rc = 1;
      break;
    }
    std::string answer = "swapped";
    for (int i = 0; i < count; ++i) {
      if (i > 0 && options.swap_interval_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(options.swap_interval_ms));
      }
      serving = 1 - serving;
      absl::StatusOr<double> seconds = Activate(*engines, host, options, serving, alive);
      if (!seconds.ok()) {
        answer = absl::StrCat("error ", seconds.status().message());
        rc = 1;
        break;
      }
      // An experiment, not what the agent does: hand freed heap pages back after the swap.
      if (options.trim_after_swap) malloc_trim(0);
      absl::StrAppendFormat(&answer, " %.6f", *seconds);
    }
    out << answer << std::endl;
    if (rc != 0) break;
  }
  server->Shutdown();
  return rc;
}

absl::StatusOr<SwapReport> RunSwapBench(const BenchOptions& options) {
  if (options.swaps < 1 || options.clients < 1 || options.rss_every_swaps < 1) {
    return absl::InvalidArgumentError("swaps, clients and rss_every_swaps must be at least 1");
  }
  HostOptions host_options = options.host;
  std::string scratch;
  if (host_options.socket_path.empty()) {
    // Short: a Unix socket path must fit in 108 bytes.
    char tmpl[] = "/tmp/ef-swap-XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
    scratch = tmpl;
    host_options.socket_path = scratch + "/agent.sock";
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } cleanup{scratch};

  // The exact answers of both versions to the request the clients send.
  const agent::TensorData input = SampleInput(host_options);
  std::vector<float> expected[2];
  {
    std::unique_ptr<agent::EngineFactory> engines = agent::MakeOpenCvEngineFactory();
    for (int which : {0, 1}) {
      const std::string& path = which == 0 ? host_options.model_a : host_options.model_b;
      auto engine = engines->Load(path);
      if (!engine.ok())
        return absl::Status(engine.status().code(),
                            absl::StrCat("load ", path, ": ", engine.status().message()));
      auto outputs = (*engine)->Run({input}, {});
      if (!outputs.ok())
        return absl::Status(outputs.status().code(),
                            absl::StrCat("run ", path, ": ", outputs.status().message()));
      if (outputs->size() != 1)
        return absl::InvalidArgumentError(absl::StrCat(path, " must have exactly one output"));
      expected[which] = (*outputs)[0].data;
    }
    if (expected[0] == expected[1]) {
      return absl::InvalidArgumentError("the two models answer alike: a swap would be invisible");
    }
  }
  v1::PredictRequest request;
  request.set_model_name(host_options.model_name);
  v1::Tensor* tensor = request.add_inputs();
  tensor->set_name(input.name);
  tensor->mutable_shape()->Add(input.shape.begin(), input.shape.end());
  tensor->mutable_data()->Add(input.data.begin(), input.data.end());

  std::string shape;
  for (int64_t d : host_options.input_shape) absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
  HostProcess host;
  std::vector<std::string> argv = {"edgefleet-bench-swap",
                                   "--host",
                                   "--socket",
                                   host_options.socket_path,
                                   "--model-a",
                                   host_options.model_a,
                                   "--model-b",
                                   host_options.model_b,
                                   "--model-name",
                                   host_options.model_name,
                                   "--input-name",
                                   host_options.input_name,
                                   "--input-shape",
                                   shape,
                                   "--swap-interval-ms",
                                   absl::StrCat(host_options.swap_interval_ms),
                                   "--update-nice",
                                   absl::StrCat(host_options.update_nice)};
  if (host_options.trim_after_swap) argv.push_back("--trim-after-swap");
  if (auto s = host.Spawn(options.host_binary, argv); !s.ok()) return s;
  auto ready = host.Receive();
  if (!ready.ok()) return ready.status();
  if (ready->rfind("ready ", 0) != 0)
    return absl::InternalError(absl::StrCat("host said '", *ready, "'"));

  SwapReport report;
  report.swaps = options.swaps;
  report.clients = options.clients;
  report.host_pid = host.pid();
  report.rss_early_swaps = std::min(10, options.swaps);

  std::atomic<int> phase{kWarmUp};
  std::vector<ClientResult> results(static_cast<size_t>(options.clients));
  std::vector<std::thread> clients;
  for (ClientResult& result : results) {
    clients.emplace_back(ClientLoop, std::cref(host_options.socket_path), std::cref(request),
                         std::cref(expected), std::cref(phase), std::ref(result));
  }
  double phase_seconds[kPhases] = {};
  int steady_windows = 0;
  int done = 0;  // swaps so far
  // A steady window: no swap runs; the host's RSS is read every 100 ms and the median kept,
  // so one reading taken while a request still holds a replaced model does not decide it.
  auto steady_window = [&](double seconds) -> int64_t {
    phase = kSteady;
    ++steady_windows;
    const Clock::time_point start = Clock::now();
    const Clock::time_point end =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<int64_t> rss;
    do {
      Hold(0.1);
      rss.push_back(ReadRssKib(host.pid()));
    } while (Clock::now() < end);
    phase_seconds[kSteady] += std::chrono::duration<double>(Clock::now() - start).count();
    std::sort(rss.begin(), rss.end());
    return rss[rss.size() / 2];
  };
  // The host's heap in use (KiB) and how many engines it has loaded still exist.
  auto heap = [&]() -> absl::StatusOr<std::pair<int64_t, int64_t>> {
    if (auto s = host.Send("heap"); !s.ok()) return s;
    auto answer = host.Receive();
    if (!answer.ok()) return answer.status();
    std::vector<std::string> parts = absl::StrSplit(*answer, ' ');
    int64_t bytes = 0, alive = 0;
    if (parts.size() != 3 || parts[0] != "heap" || !absl::SimpleAtoi(parts[1], &bytes) ||
        !absl::SimpleAtoi(parts[2], &alive)) {
      return absl::InternalError(absl::StrCat("host answered '", *answer, "'"));
    }
    return std::make_pair(bytes / 1024, alive);
  };
  // After a steady window: its RSS median and the heap in use, as (swaps done, KiB).
  auto settle = [&](double seconds) -> absl::StatusOr<int64_t> {
    const int64_t rss = steady_window(seconds);
    auto in_use = heap();
    if (!in_use.ok()) return in_use.status();
    report.rss_settled.emplace_back(done, rss);
    report.heap_settled.emplace_back(done, in_use->first);
    report.engines_settled.emplace_back(done, in_use->second);
    return rss;
  };
  std::vector<double> swap_seconds;
  auto swap = [&](int count) -> absl::Status {
    phase = kSwapping;
    const Clock::time_point start = Clock::now();
    for (const int goal = done + count; done < goal;) {
      const int batch = std::min(options.rss_every_swaps, goal - done);
      if (auto s = host.Send(absl::StrCat("swap ", batch)); !s.ok()) return s;
      auto answer = host.Receive();
      if (!answer.ok()) return answer.status();
      std::vector<std::string> parts = absl::StrSplit(*answer, ' ', absl::SkipEmpty());
      if (parts.size() != static_cast<size_t>(batch) + 1 || parts[0] != "swapped") {
        return absl::InternalError(absl::StrCat("host answered '", *answer, "'"));
      }
      for (size_t i = 1; i < parts.size(); ++i) {
        double seconds = 0;
        if (!absl::SimpleAtod(parts[i], &seconds)) return absl::InternalError("bad swap time");
        swap_seconds.push_back(seconds);
      }
      done += batch;
      report.rss_curve.emplace_back(done, ReadRssKib(host.pid()));
    }
    phase_seconds[kSwapping] += std::chrono::duration<double>(Clock::now() - start).count();
    return absl::OkStatus();
  };

  // Warm-up, then a steady window, the first 10 swaps and a steady window (RSS "after 10"),
  // then rounds of swaps and steady windows, interleaved so that a change in the machine's other
  // load during the run weighs on both sides of the comparison alike.
  phase = kWarmUp;
  Hold(options.warmup_seconds);
  const int rounds = std::max(1, std::min(options.rounds, options.swaps - report.rss_early_swaps));
  const double window = options.steady_seconds / (rounds + 2);
  report.rss_kib_before_swaps = steady_window(window);
  absl::Status status = swap(report.rss_early_swaps);
  if (status.ok()) {
    auto rss = settle(window);
    status = rss.status();
    if (rss.ok()) report.rss_kib_early = *rss;
  }
  for (int round = 0; status.ok() && round < rounds; ++round) {
    const int left = options.swaps - done;
    status = swap(left / (rounds - round));
    if (status.ok()) {
      auto rss = settle(window);
      status = rss.status();
      if (rss.ok()) report.rss_kib_after_all = *rss;
    }
  }
  report.steady_windows = steady_windows;
  phase = kStopped;
  for (std::thread& t : clients) t.join();
  if (!status.ok()) return status;
  if (auto s = host.Quit(); !s.ok()) return s;

  std::vector<float> by_phase[kPhases];
  for (const ClientResult& r : results) {
    report.requests += r.requests;
    report.failed_requests += r.failed;
    report.wrong_answers += r.wrong;
    report.answers_v1 += r.by_version[0];
    report.answers_v2 += r.by_version[1];
    if (report.first_error.empty()) report.first_error = r.first_error;
    for (int p = 0; p < kPhases; ++p) {
      by_phase[p].insert(by_phase[p].end(), r.latency_us[p].begin(), r.latency_us[p].end());
    }
  }
  report.steady = Summarize(std::move(by_phase[kSteady]), phase_seconds[kSteady]);
  report.swapping = Summarize(std::move(by_phase[kSwapping]), phase_seconds[kSwapping]);
  report.p99_ratio = report.steady.p99_ms > 0 ? report.swapping.p99_ms / report.steady.p99_ms : 0;

  report.swap_phase_seconds = phase_seconds[kSwapping];
  for (double s : swap_seconds) report.swap_seconds_total += s;
  std::vector<float> swap_us;
  for (double s : swap_seconds) swap_us.push_back(static_cast<float>(s * 1e6));
  LatencySummary swap_summary = Summarize(std::move(swap_us), report.swap_seconds_total);
  report.swap_p50_ms = swap_summary.p50_ms;
  report.swap_max_ms = swap_summary.max_ms;
  report.swaps_per_second = swap_summary.calls_per_second();

  for (const auto& [swaps, kib] : report.rss_curve) {
    report.rss_kib_max = std::max(report.rss_kib_max, kib);
  }
  if (report.rss_kib_early > 0) {
    report.rss_growth_pct = 100.0 *
                            static_cast<double>(report.rss_kib_after_all - report.rss_kib_early) /
                            static_cast<double>(report.rss_kib_early);
  }
  return report;
}

std::string ReportJson(const SwapReport& r) {
  auto pairs = [](const std::vector<std::pair<int, int64_t>>& points) {
    std::string out;
    for (const auto& [swaps, kib] : points) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", "[", swaps, ", ", kib, "]");
    }
    return out;
  };
  return absl::StrCat(
      "{\n",
      absl::StrFormat(R"(  "swaps": %d, "clients": %d, "host_pid": %d,)", r.swaps, r.clients,
                      r.host_pid),
      "\n",
      absl::StrFormat(
          R"(  "requests": %d, "failed_requests": %d, "wrong_answers": %d, "answers_v1": %d, "answers_v2": %d, "first_error": %s,)",
          r.requests, r.failed_requests, r.wrong_answers, r.answers_v1, r.answers_v2,
          JsonString(r.first_error)),
      absl::StrFormat("\n  \"steady_windows\": %d,", r.steady_windows),
      "\n  \"steady\": ", LatencyJson(r.steady), ",\n  \"swapping\": ", LatencyJson(r.swapping),
      ",\n", absl::StrFormat(R"(  "p99_ratio": %.4f,)", r.p99_ratio), "\n",
      absl::StrFormat(
          R"(  "swap_seconds_total": %.4f, "swap_phase_seconds": %.4f, "swap_p50_ms": %.4f, "swap_max_ms": %.4f, "swaps_per_second": %.2f,)",
          r.swap_seconds_total, r.swap_phase_seconds, r.swap_p50_ms, r.swap_max_ms,
          r.swaps_per_second),
      "\n",
      absl::StrFormat(
          R"(  "rss_kib_before_swaps": %d, "rss_early_swaps": %d, "rss_kib_early": %d, "rss_kib_after_all": %d, "rss_kib_max": %d, "rss_growth_pct": %.3f,)",
          r.rss_kib_before_swaps, r.rss_early_swaps, r.rss_kib_early, r.rss_kib_after_all,
          r.rss_kib_max, r.rss_growth_pct),
      "\n  \"rss_settled\": [", pairs(r.rss_settled), "],\n  \"heap_settled\": [",
      pairs(r.heap_settled), "],\n  \"engines_settled\": [", pairs(r.engines_settled),
      "],\n  \"rss_curve\": [", pairs(r.rss_curve), "]\n}\n");
}

std::string ReportText(const SwapReport& r) {
  auto verdict = [](bool pass) { return pass ? "PASS" : "FAIL"; };
  std::string out = absl::StrFormat("bench/swap: %d hot swaps, %d clients, host pid %d\n", r.swaps,
                                    r.clients, r.host_pid);
  absl::StrAppendFormat(&out,
                        "Predict latency (client side, over the Unix socket; steady = %d windows "
                        "between the swap rounds):\n",
                        r.steady_windows);
  absl::StrAppend(&out, LatencyLine("steady", r.steady), LatencyLine("during swaps", r.swapping));
  absl::StrAppendFormat(&out,
                        "swaps: %.1f/s (host time %.3f s in load+warm-up+flip, p50 %.3f ms, max "
                        "%.3f ms; swap phase %.3f s wall)\n",
                        r.swaps_per_second, r.swap_seconds_total, r.swap_p50_ms, r.swap_max_ms,
                        r.swap_phase_seconds);
  absl::StrAppendFormat(
      &out,
      "host RSS (median of a steady window): %d KiB before swaps, %d KiB after %d, %d KiB "
      "after %d; right after a batch of swaps at most %d KiB\n",
      r.rss_kib_before_swaps, r.rss_kib_early, r.rss_early_swaps, r.rss_kib_after_all, r.swaps,
      r.rss_kib_max);
  absl::StrAppend(&out, "host RSS after each steady window (swaps: MiB):");
  for (const auto& [swaps, kib] : r.rss_settled) {
    absl::StrAppendFormat(&out, " %d: %.1f", swaps, static_cast<double>(kib) / 1024.0);
  }
  absl::StrAppend(&out, "\nhost heap in use (mallinfo2) at the same points (swaps: MiB):");
  for (const auto& [swaps, kib] : r.heap_settled) {
    absl::StrAppendFormat(&out, " %d: %.1f", swaps, static_cast<double>(kib) / 1024.0);
  }
  absl::StrAppend(&out, "\nengines loaded that still exist (swaps: engines):");
  for (const auto& [swaps, count] : r.engines_settled)
    absl::StrAppend(&out, " ", swaps, ": ", count);
  absl::StrAppend(&out, "\n");
  absl::StrAppendFormat(&out, "targets:\n  failed requests = 0: %d failed, %d wrong answers  %s\n",
                        r.failed_requests, r.wrong_answers,
                        verdict(r.failed_requests == 0 && r.wrong_answers == 0));
  if (!r.first_error.empty()) absl::StrAppend(&out, "    first error: ", r.first_error, "\n");
  absl::StrAppendFormat(&out, "  p99 during swaps <= 1.2x steady: %.3f / %.3f ms = %.2fx  %s\n",
                        r.swapping.p99_ms, r.steady.p99_ms, r.p99_ratio,
                        verdict(r.p99_ratio <= 1.2));
  absl::StrAppendFormat(&out, "  RSS after %d swaps < +2%% of after %d: %+.2f%%  %s\n", r.swaps,
                        r.rss_early_swaps, r.rss_growth_pct, verdict(r.rss_growth_pct < 2.0));
  return out;
}

}  // namespace edgefleet::bench
