// edgefleet-bench-fleet: a fleet simulator against a running edgefleet-server. Many devices live
// in this one process, each enrolled for real (its own key, CSR and certificate) and calling over
// its own mTLS connection. It measures what a fleet operator meets as the fleet grows:
//   1. enrollment of --devices devices;
//   2. assignment: a rollout of version 2 over every device (one wave of 100%), from
//      CreateRollout until the wave has every device assigned;
//   3. steady check-ins: --connected of them hold a connection and check in every interval (the
//      interval that gives --rate check-ins/s, jittered +-20% per check-in like the agent's),
//      open loop: a check-in's time counts from when it was due, answered or not (no coordinated
//      omission). A device told to run version 2 reports its update events and then runs it;
//      every --telemetry-every-th check-in is followed by a telemetry window upload;
//   4. the device list, page by page (REST, 100 devices a page) over the whole registry;
//   5. the server's RSS with no device connected, before, at the peak of and 30 s after the
//      load, and (without a storm) 30 s after every device disconnected (--server-pid);
//   6. a reconnect storm (--storm N --restart-command CMD): CMD restarts the server, then N
//      connected devices check in at once and retry as the agent does (1 s doubling to 60 s,
//      +-20%); served when every one has had an answer.
// Prints a table, then one JSON line.
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/flags.h"
#include "bench/common/fleet_client.h"
#include "common/core/process.h"
#include "tests/support/telemetry_windows.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace v1 = edgefleet::v1;
namespace fb = edgefleet::bench;

constexpr const char* kUsage =
    R"(usage: edgefleet-bench-fleet --device-address H:P --admin-address H:P --http-address H:P
           --ca-file F --admin-token T --model-v1 F --model-v2 F [flags]
  --devices N            devices enrolled (default 100000)
  --connected C          of them, devices holding a connection and checking in (default: all,
                         at most the open-file limit less 1,000: one descriptor each)
  --rate R               check-ins per second, all connected devices together (default 5000)
  --seconds S            how long the check-in load is measured (default 60)
  --warmup-seconds W     the load runs W seconds before it is measured (default 0): calls
                         made then (a rollout's downloads and update events) are not counted
  --telemetry-every K    a telemetry upload after every K-th check-in of a device (default 4;
                         0: none)
  --telemetry-windows W  one-minute windows each upload carries (default 1). The agent uploads
                         after each check-in what its outbox holds: at a check-in interval of
                         five minutes, --telemetry-every 1 --telemetry-windows 5
  --enroll-threads N     parallel enrollments (default 8)
  --completion-threads N threads reading answers (default 2)
  --list-pages P         device list pages timed (default: every page)
  --server-pid PID       the server's process, for its RSS and CPU time
  --db-pid PID           PostgreSQL's postmaster, for the CPU time of the database
  --idle-seconds S       wait after the load before the RSS is read again (default 30)
  --storm N              devices in the reconnect storm (default 0: no storm)
  --restart-command CMD  restarts the server (run with sh -c; must return once it is ready)
  --json FILE            also write the result line there
)";

struct Options {
  std::string device_address, admin_address, http_address, ca_file, admin_token;
  std::string model_v1, model_v2;
  int devices = 100000;
  int connected = 0;
  double rate = 5000;
  double seconds = 60;
  int telemetry_every = 4;
  int telemetry_windows = 1;
  int enroll_threads = 8;
  int completion_threads = 2;
  int list_pages = 0;
  int server_pid = 0;
  int db_pid = 0;
  int idle_seconds = 30;
  double warmup_seconds = 0;
  int storm = 0;
  std::string restart_command;
  std::string json;
};

constexpr char kModel[] = "fleet";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// A simulated device: its identity, its connection once connected, and what it runs.
struct Device {
  fb::DeviceIdentity identity;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::DeviceService::Stub> stub;
  uint64_t stream_id = 0;
  std::mutex mu;  // guards what follows: answers of one device may overlap under overload
  v1::Inventory inventory;
  uint64_t check_ins = 0;
  uint64_t next_sequence = 1;
};

// What calls of one kind came to: counts, the latency of each answered one, the first error.
struct CallCounts {
  std::vector<double> latency_ms;
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::string first_error;
};

// CallCounts of the calls made since `Restart(from)`: a call made earlier (due before `from`)
// and answered later is left out, so the measured part of a load is not charged for the
// warm-up's calls. The load's result is a copy, so the storm's calls do not count in it.
struct CallStats {
  void Record(bool success, Clock::time_point made, const grpc::Status& status) {
    const double ms = Millis(Clock::now() - made);
    std::lock_guard lock(mu_);
    if (made < from_) return;
    CallCounts& c = counts_;
    if (success) {
      ++c.ok;
      c.latency_ms.push_back(ms);
    } else {
      ++c.failed;
      if (c.first_error.empty()) {
        c.first_error = absl::StrCat(status.error_code(), " ", status.error_message());
      }
    }
  }
  void Restart(Clock::time_point from) {
    std::lock_guard lock(mu_);
    from_ = from;
    counts_ = CallCounts();
  }
  CallCounts Counts() {
    std::lock_guard lock(mu_);
    return counts_;
  }

 private:
  std::mutex mu_;
  Clock::time_point from_{};
  CallCounts counts_;
};

// One asynchronous call in flight; `done` runs on a completion thread.
struct PendingCall {
  virtual ~PendingCall() = default;
  virtual void Done(bool ok) = 0;
};

template <typename Response>
struct AsyncCall : PendingCall {
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  std::function<void(bool, AsyncCall&)> on_done;
  void Done(bool ok) override { on_done(ok && status.ok(), *this); }
};

// The simulator: the fleet, its completion threads and the calls devices make.
class Fleet {
 public:
  explicit Fleet(const Options& o) : o_(o), queues_(o.completion_threads) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 64; ++i) {
      edgefleet::test::WindowShape shape{.features = 4, .classes = 3, .requests = 600};
      templates_.push_back(edgefleet::test::MakeTelemetryWindow(rng, shape, kModel, "1", 0, 60));
    }
    for (auto& cq : queues_) {
      readers_.emplace_back([&cq] {
        void* tag;
        bool ok;
        while (cq.Next(&tag, &ok)) {
          std::unique_ptr<PendingCall> call(static_cast<PendingCall*>(tag));
          call->Done(ok);
        }
      });
    }
  }
  ~Fleet() {
    for (auto& cq : queues_) cq.Shutdown();
    for (auto& t : readers_) t.join();
  }

  std::vector<std::unique_ptr<Device>> devices;
  CallStats check_ins, events, telemetry;
  std::atomic<uint64_t> in_flight{0};
  std::atomic<uint64_t> updated{0};  // devices that moved to version 2

  // A check-in of `d` due at `due`; `after(ok, status)` runs once it is answered.
  void CheckIn(Device& d, Clock::time_point due,
               std::function<void(bool, const grpc::Status&)> after, bool follow_ups = true) {
    auto call = std::make_unique<AsyncCall<v1::CheckInResponse>>();
    v1::CheckInRequest request;
    {
      std::lock_guard lock(d.mu);
      *request.mutable_inventory() = d.inventory;
    }
    call->context.set_deadline(std::chrono::system_clock::now() + 30s);
    call->on_done = [this, &d, due, after = std::move(after), follow_ups](
                        bool ok, AsyncCall<v1::CheckInResponse>& c) {
      check_ins.Record(ok, due, c.status);
      if (ok && follow_ups) FollowUp(d, c.response);
      if (after) after(ok, c.status);
      --in_flight;
    };
    ++in_flight;
    Start(std::move(call), [&](auto& c, grpc::CompletionQueue* cq) {
      return d.stub->AsyncCheckIn(&c.context, request, cq);
    });
  }

  // Waits until no call is in flight (each has a 30 s deadline).
  void Drain() const {
    while (in_flight.load() > 0) std::this_thread::sleep_for(10ms);
  }

 private:
  // Starts the call that `start(call, cq)` makes; the call owns itself until it is answered.
  template <typename Response, typename StartFn>
  void Start(std::unique_ptr<AsyncCall<Response>> owned, StartFn start) {
    grpc::CompletionQueue& cq = queues_[next_queue_++ % queues_.size()];
    AsyncCall<Response>* call = owned.release();
    call->reader = start(*call, &cq);
    call->reader->Finish(&call->response, &call->status, call);
  }

  // What an agent does after an answer: install a version it is told to run (reported as its
  // update events) and, every K-th check-in, upload a telemetry window.
  void FollowUp(Device& d, const v1::CheckInResponse& answer) {
    v1::ReportEventRequest report;
    v1::UploadTelemetryRequest upload;
    {
      std::lock_guard lock(d.mu);
      ++d.check_ins;
      for (const v1::DesiredModel& desired : answer.desired()) {
        v1::InstalledModel* running = d.inventory.mutable_models(0);
        if (desired.metadata().version() == running->version()) continue;
        for (auto kind : {v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED, v1::UPDATE_EVENT_KIND_DOWNLOADED,
                          v1::UPDATE_EVENT_KIND_VERIFIED, v1::UPDATE_EVENT_KIND_PROBATION_STARTED,
                          v1::UPDATE_EVENT_KIND_ACTIVATED}) {
          v1::UpdateEvent* e = report.add_events();
          e->set_model_name(kModel);
          e->set_version(desired.metadata().version());
          e->set_kind(kind);
          e->mutable_occurred_at()->set_seconds(std::time(nullptr));
        }
        running->set_version(desired.metadata().version());
        running->set_artifact_sha256(desired.metadata().artifact_sha256());
        ++updated;
      }
      if (o_.telemetry_every > 0 && d.check_ins % static_cast<uint64_t>(o_.telemetry_every) == 0) {
        upload.set_stream_id(d.stream_id);
        const int64_t now = std::time(nullptr);
        for (int i = o_.telemetry_windows; i > 0; --i) {  // oldest first, a minute each
          v1::TelemetryWindow* w = upload.add_windows();
          *w = templates_[d.next_sequence % templates_.size()];
          w->set_version(d.inventory.models(0).version());
          w->set_sequence(d.next_sequence++);
          w->mutable_window_start()->set_seconds(now - 60 * i);
          w->mutable_window_end()->set_seconds(now - 60 * (i - 1));
        }
      }
    }
    const auto now = Clock::now();
    if (report.events_size() > 0) {
      auto call = std::make_unique<AsyncCall<v1::ReportEventResponse>>();
      call->context.set_deadline(std::chrono::system_clock::now() + 30s);
      call->on_done = [this, now](bool ok, AsyncCall<v1::ReportEventResponse>& c) {
        events.Record(ok, now, c.status);
        --in_flight;
      };
      ++in_flight;
      Start(std::move(call), [&](auto& c, grpc::CompletionQueue* cq) {
        return d.stub->AsyncReportEvent(&c.context, report, cq);
      });
    }
    if (upload.windows_size() > 0) {
      auto call = std::make_unique<AsyncCall<v1::UploadTelemetryResponse>>();
      call->context.set_deadline(std::chrono::system_clock::now() + 30s);
      call->on_done = [this, now](bool ok, AsyncCall<v1::UploadTelemetryResponse>& c) {
        telemetry.Record(ok && c.response.rejected_size() == 0, now, c.status);
        --in_flight;
      };
      ++in_flight;
      Start(std::move(call), [&](auto& c, grpc::CompletionQueue* cq) {
        return d.stub->AsyncUploadTelemetry(&c.context, upload, cq);
      });
    }
  }

  const Options& o_;
  std::vector<v1::TelemetryWindow> templates_;
  std::vector<grpc::CompletionQueue> queues_;
  std::vector<std::thread> readers_;
  std::atomic<size_t> next_queue_{0};
};

// Rollout of version 2 over every device in one wave: seconds from CreateRollout until the wave
// has `expected` devices assigned.
double TimeAssignment(v1::AdminService::Stub& admin, const Options& o, uint64_t expected) {
  v1::CreateRolloutRequest request;
  request.set_name("fleet-v2");
  request.set_model_name(kModel);
  request.set_version("2");
  request.add_waves()->set_percent(100);
  request.mutable_soak()->set_seconds(3600);
  const auto start = Clock::now();
  {
    grpc::ClientContext context;
    fb::AuthorizeAdmin(&context, o.admin_token);
    v1::Rollout created;
    grpc::Status s = admin.CreateRollout(&context, request, &created);
    if (!s.ok()) throw std::runtime_error("create rollout: " + s.error_message());
  }
  while (Clock::now() - start < 600s) {
    grpc::ClientContext context;
    fb::AuthorizeAdmin(&context, o.admin_token);
    v1::GetRolloutRequest get;
    get.set_name("fleet-v2");
    v1::Rollout rollout;
    grpc::Status s = admin.GetRollout(&context, get, &rollout);
    if (!s.ok()) throw std::runtime_error("get rollout: " + s.error_message());
    if (rollout.waves_size() > 0 && rollout.waves(0).targeted() >= expected) {
      const double seconds = Seconds(Clock::now() - start);
      // Paused, its targets stay (devices still update) but the controller no longer evaluates
      // it: the check-ins then meet what a fleet meets most of the time, rollouts that are done.
      // (A running rollout's evaluation reads every matching device: its cost shows in the
      // statements table.)
      grpc::ClientContext pause_context;
      fb::AuthorizeAdmin(&pause_context, o.admin_token);
      v1::PauseRolloutRequest pause;
      pause.set_name("fleet-v2");
      v1::Rollout paused;
      s = admin.PauseRollout(&pause_context, pause, &paused);
      if (!s.ok()) throw std::runtime_error("pause rollout: " + s.error_message());
      return seconds;
    }
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("the rollout did not assign every device within 600 s");
}

// Pages through GET /v1/devices; the time of each page in ms.
std::vector<double> TimeListPages(const Options& o, uint64_t* devices_listed) {
  httplib::Client http("http://" + o.http_address);
  http.set_read_timeout(60, 0);
  const httplib::Headers headers{{"Authorization", "Bearer " + o.admin_token}};
  const std::regex next_token(R"re("nextPageToken"\s*:\s*"([^"]*)")re");
  const std::regex device_id(R"re("deviceId")re");
  std::vector<double> ms;
  std::string token;
  *devices_listed = 0;
  do {
    std::string path = "/v1/devices?page_size=100";
    if (!token.empty()) path += "&page_token=" + token;
    const auto start = Clock::now();
    auto answer = http.Get(path.c_str(), headers);
    ms.push_back(Millis(Clock::now() - start));
    if (!answer || answer->status != 200) {
      throw std::runtime_error("GET " + path + ": " +
                               (answer ? std::to_string(answer->status) + " " + answer->body
                                       : httplib::to_string(answer.error())));
    }
    *devices_listed += static_cast<uint64_t>(
        std::distance(std::sregex_iterator(answer->body.begin(), answer->body.end(), device_id),
                      std::sregex_iterator()));
    std::smatch m;
    token = std::regex_search(answer->body, m, next_token) ? m[1].str() : "";
  } while (!token.empty() && (o.list_pages == 0 || static_cast<int>(ms.size()) < o.list_pages));
  return ms;
}

// The steady load: every connected device checks in once per interval, jittered.
struct LoadResult {
  double seconds = 0;
  // CPU seconds used during the load by each side.
  double server_cpu_s = 0;
  double db_cpu_s = 0;
  double simulator_cpu_s = 0;
  uint64_t late = 0;  // check-ins sent more than 10 ms after they were due
  uint64_t due = 0;
  double peak_rss_mib = 0;
  CallCounts check_ins, events, telemetry;  // of the calls made in the measured seconds
};

LoadResult RunLoad(Fleet& fleet, const Options& o, int connected) {
  const auto interval = std::chrono::duration<double>(connected / o.rate);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> jitter(0.8, 1.2), phase(0.0, 1.0);
  using Entry = std::pair<Clock::time_point, int>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> schedule;
  const auto start = Clock::now();
  for (int i = 0; i < connected; ++i) {
    schedule.emplace(start + std::chrono::duration_cast<Clock::duration>(interval * phase(rng)), i);
  }
  auto after = [&start](double seconds) {
    return start +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  // The warm-up's calls are made but not counted: a rollout's downloads and update events at
  // the start fall there, and what is measured is the fleet's steady state.
  const auto measured_from = after(o.warmup_seconds);
  const auto end = after(o.warmup_seconds + o.seconds);
  LoadResult r;
  double server_cpu = 0, db_cpu = 0, own_cpu = 0;
  auto start_measuring = [&] {
    for (CallStats* stats : {&fleet.check_ins, &fleet.events, &fleet.telemetry}) {
      stats->Restart(measured_from);
    }
    server_cpu = o.server_pid > 0 ? fb::ProcessCpuSeconds(o.server_pid) : 0;
    db_cpu = o.db_pid > 0 ? fb::ProcessTreeCpuSeconds(o.db_pid) : 0;
    own_cpu = fb::ProcessCpuSeconds(0);
    r.late = r.due = 0;
  };
  bool measuring = false;
  auto next_rss = start;
  while (!schedule.empty() && schedule.top().first < end) {
    auto [due, i] = schedule.top();
    schedule.pop();
    if (!measuring && due >= measured_from) {
      if (Clock::now() < measured_from) std::this_thread::sleep_until(measured_from);
      start_measuring();
      measuring = true;
    }
    const auto now = Clock::now();
    if (due > now) {
      std::this_thread::sleep_until(due);
    } else if (now - due > 10ms) {
      ++r.late;
    }
    ++r.due;
    fleet.CheckIn(*fleet.devices[static_cast<size_t>(i)], due, nullptr);
    schedule.emplace(due + std::chrono::duration_cast<Clock::duration>(interval * jitter(rng)), i);
    if (o.server_pid > 0 && Clock::now() >= next_rss) {
      r.peak_rss_mib = std::max(r.peak_rss_mib, fb::ProcessRssMib(o.server_pid));
      next_rss = Clock::now() + 1s;
    }
  }
  if (!measuring) start_measuring();
  fleet.Drain();
  r.seconds = Seconds(Clock::now() - measured_from);
  r.check_ins = fleet.check_ins.Counts();
  r.events = fleet.events.Counts();
  r.telemetry = fleet.telemetry.Counts();
  if (o.server_pid > 0) r.server_cpu_s = fb::ProcessCpuSeconds(o.server_pid) - server_cpu;
  if (o.db_pid > 0) r.db_cpu_s = fb::ProcessTreeCpuSeconds(o.db_pid) - db_cpu;
  r.simulator_cpu_s = fb::ProcessCpuSeconds(0) - own_cpu;
  return r;
}

// The reconnect storm after a server restart; seconds until every storm device was answered.
struct StormResult {
  double restart_s = 0;
  double served_s = 0;
  uint64_t retries = 0;
  uint64_t errors = 0;  // failures other than the server being away (UNAVAILABLE, deadline)
  std::string first_error;
};

StormResult RunStorm(Fleet& fleet, const Options& o, int storm) {
  StormResult r;
  const auto restart_start = Clock::now();
  if (std::system(o.restart_command.c_str()) != 0) {
    throw std::runtime_error("restart command failed: " + o.restart_command);
  }
  r.restart_s = Seconds(Clock::now() - restart_start);
  std::mutex mu;
  std::atomic<int> served{0};
  std::atomic<uint64_t> retries{0}, errors{0};
  std::string first_error;
  // Each device: one attempt now, then the agent's backoff until answered.
  struct Retry {
    Clock::time_point at;
    int device;
    int backoff_s;
    bool operator>(const Retry& other) const { return at > other.at; }
  };
  std::priority_queue<Retry, std::vector<Retry>, std::greater<>> retry_queue;
  std::mt19937_64 rng(13);
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  const auto start = Clock::now();
  std::function<void(int, int)> attempt = [&](int i, int backoff_s) {
    fleet.CheckIn(
        *fleet.devices[static_cast<size_t>(i)], Clock::now(),
        [&, i, backoff_s](bool ok, const grpc::Status& status) {
          if (ok) {
            ++served;
            return;
          }
          if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
              status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
            ++errors;
          }
          ++retries;
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = status.error_message();
          const auto wait = std::chrono::duration<double>(backoff_s * jitter(rng));
          retry_queue.push({Clock::now() + std::chrono::duration_cast<Clock::duration>(wait), i,
                            std::min(backoff_s * 2, 60)});
        },
        /*follow_ups=*/false);
  };
  for (int i = 0; i < storm; ++i) attempt(i, 1);
  while (served.load() < storm && Clock::now() - start < 300s) {
    std::vector<Retry> now_due;
    {
      std::lock_guard lock(mu);
      while (!retry_queue.empty() && retry_queue.top().at <= Clock::now()) {
        now_due.push_back(retry_queue.top());
        retry_queue.pop();
      }
    }
    for (const Retry& retry : now_due) attempt(retry.device, retry.backoff_s);
    std::this_thread::sleep_for(5ms);
  }
  r.served_s = Seconds(Clock::now() - start);
  fleet.Drain();
  r.retries = retries;
  r.errors = errors;
  r.first_error = first_error;
  if (served.load() < storm) r.served_s = -1;
  return r;
}

int OpenFileLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  return static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 30));
}

int Run(const Options& o) {
  const std::string ca = fb::ReadFileOrThrow(o.ca_file);
  auto admin = fb::AdminStub(o.admin_address);
  fb::PushModelVersion(*admin, o.admin_token, fb::ClassifierMetadata(kModel, "1"),
                       fb::ReadFileOrThrow(o.model_v1));
  fb::PushModelVersion(*admin, o.admin_token, fb::ClassifierMetadata(kModel, "2"),
                       fb::ReadFileOrThrow(o.model_v2));
  const std::string token =
      fb::CreateEnrollmentToken(*admin, o.admin_token, static_cast<uint32_t>(o.devices));
  std::string v1_sha;
  {
    grpc::ClientContext context;
    fb::AuthorizeAdmin(&context, o.admin_token);
    v1::GetModelRequest request;
    request.set_model_name(kModel);
    v1::Model model;
    grpc::Status s = admin->GetModel(&context, request, &model);
    if (!s.ok()) throw std::runtime_error("get model: " + s.error_message());
    for (const auto& v : model.versions()) {
      if (v.version() == "1") v1_sha = v.artifact_sha256();
    }
  }
  const int connected = o.connected > 0 ? std::min(o.connected, o.devices)
                                        : std::min(o.devices, std::max(1, OpenFileLimit() - 1000));

  Fleet fleet(o);
  fleet.devices.resize(static_cast<size_t>(o.devices));
  v1::Inventory inventory;
  inventory.set_hardware("sim");
  inventory.set_agent_version("bench-fleet");
  inventory.set_patch_decoder_version(1);
  auto* running = inventory.add_models();
  running->set_model_name(kModel);
  running->set_version("1");
  running->set_state(v1::MODEL_STATE_SERVING);
  running->set_artifact_sha256(v1_sha);

  // 1. Enrollment.
  const uint64_t run_tag = std::random_device{}() % 1000000;
  auto t = Clock::now();
  fb::ForEachInParallel(o.devices, o.enroll_threads, [&](int i) {
    auto d = std::make_unique<Device>();
    d->identity = fb::EnrollDevice(o.device_address, ca, token,
                                   absl::StrFormat("sim-%06d-%06d", run_tag, i), inventory);
    d->inventory = inventory;
    d->stream_id = (std::hash<std::string>{}(d->identity.device_id) >> 2) + 1;
    fleet.devices[static_cast<size_t>(i)] = std::move(d);
    if ((i + 1) % 10000 == 0) std::cerr << absl::StrFormat("enrolled %d\n", i + 1);
  });
  const double enroll_s = Seconds(Clock::now() - t);
  std::cerr << absl::StrFormat("enrolled %d devices in %.1f s\n", o.devices, enroll_s);

  // 2. Assignment over the whole registry.
  const double assign_s = TimeAssignment(*admin, o, static_cast<uint64_t>(o.devices));
  std::cerr << absl::StrFormat("rollout assigned %d devices in %.2f s\n", o.devices, assign_s);

  // 3. Connections, then the steady check-ins. The server's size with no device connected is
  // what it should come back to once they have all gone (step 6).
  const double rss_unconnected = o.server_pid > 0 ? fb::ProcessRssMib(o.server_pid) : 0;
  t = Clock::now();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < connected; ++i) {
    Device& d = *fleet.devices[static_cast<size_t>(i)];
    d.channel = fb::OpenDeviceChannel(o.device_address, ca, d.identity);
    d.stub = v1::DeviceService::NewStub(d.channel);
    channels.push_back(d.channel);
  }
  fb::ConnectAll(channels, 300);
  const double connect_s = Seconds(Clock::now() - t);
  std::cerr << absl::StrFormat("connected %d devices in %.1f s\n", connected, connect_s);
  const double rss_before = o.server_pid > 0 ? fb::ProcessRssMib(o.server_pid) : 0;
  const LoadResult load = RunLoad(fleet, o, connected);

  // 4. The device list.
  uint64_t listed = 0;
  const std::vector<double> pages = TimeListPages(o, &listed);

  // 5. The server's memory once the load is gone.
  std::this_thread::sleep_for(std::chrono::seconds(o.idle_seconds));
  const double rss_after = o.server_pid > 0 ? fb::ProcessRssMib(o.server_pid) : 0;

  // 6. The reconnect storm; without one, what the server keeps once every device has gone.
  StormResult storm;
  const int storm_devices = o.restart_command.empty() ? 0 : std::min(o.storm, connected);
  double rss_disconnected = 0;
  if (storm_devices > 0) {
    storm = RunStorm(fleet, o, storm_devices);
  } else if (o.server_pid > 0) {
    // Every reference to a channel goes, or its connection stays open.
    channels.clear();
    for (auto& d : fleet.devices) {
      d->stub.reset();
      d->channel.reset();
    }
    std::this_thread::sleep_for(std::chrono::seconds(o.idle_seconds));
    rss_disconnected = fb::ProcessRssMib(o.server_pid);
  }

  const double checkins_per_s = static_cast<double>(load.check_ins.ok) / load.seconds;
  const double p50 = fb::Quantile(load.check_ins.latency_ms, 0.5);
  const double p99 = fb::Quantile(load.check_ins.latency_ms, 0.99);
  const double page_p50 = fb::Quantile(pages, 0.5);
  const double page_p99 = fb::Quantile(pages, 0.99);
  std::string text = absl::StrFormat(
      "fleet: %d devices enrolled in %.1f s (%.0f/s); %d connected in %.1f s\n"
      "%-36s %12s\n",
      o.devices, enroll_s, o.devices / enroll_s, connected, connect_s, "", "value");
  auto row = [&text](const std::string& name, double value, int decimals = 2) {
    absl::StrAppend(&text, absl::StrFormat("%-36s %12.*f\n", name, decimals, value));
  };
  row("rollout assignment s", assign_s);
  row("check-ins due", static_cast<double>(load.due), 0);
  row("check-ins answered ok", static_cast<double>(load.check_ins.ok), 0);
  row("check-ins failed", static_cast<double>(load.check_ins.failed), 0);
  row("check-ins/s achieved", checkins_per_s, 1);
  row("check-in p50 ms", p50);
  row("check-in p99 ms", p99);
  row("sends late by >10 ms (%)",
      100.0 * static_cast<double>(load.late) / std::max<double>(1, static_cast<double>(load.due)));
  // CPU per answered check-in (the load's other calls included): what bounds the rate when
  // the three share the machine's cores.
  const double answered = std::max<double>(1, static_cast<double>(load.check_ins.ok));
  const double server_cpu_ms = 1000 * load.server_cpu_s / answered;
  const double db_cpu_ms = 1000 * load.db_cpu_s / answered;
  const double simulator_cpu_ms = 1000 * load.simulator_cpu_s / answered;
  row("server CPU ms per check-in", server_cpu_ms, 3);
  row("PostgreSQL CPU ms per check-in", db_cpu_ms, 3);
  row("simulator CPU ms per check-in", simulator_cpu_ms, 3);
  row("devices updated to v2", static_cast<double>(fleet.updated.load()), 0);
  row("event reports ok / failed", static_cast<double>(load.events.ok), 0);
  row("  failed", static_cast<double>(load.events.failed), 0);
  row("telemetry uploads ok", static_cast<double>(load.telemetry.ok), 0);
  row("  failed or refused", static_cast<double>(load.telemetry.failed), 0);
  const double windows_per_s =
      static_cast<double>(load.telemetry.ok) * o.telemetry_windows / load.seconds;
  const double upload_p99 = fb::Quantile(load.telemetry.latency_ms, 0.99);
  row("telemetry windows/s accepted", windows_per_s, 1);
  row("telemetry upload p99 ms", upload_p99);
  row("list pages", static_cast<double>(pages.size()), 0);
  row("devices listed", static_cast<double>(listed), 0);
  row("list page p50 ms", page_p50);
  row("list page p99 ms", page_p99);
  row("server RSS MiB, no device connected", rss_unconnected, 1);
  row("server RSS MiB before load", rss_before, 1);
  row("server RSS MiB peak", load.peak_rss_mib, 1);
  row(absl::StrFormat("server RSS MiB %d s after", o.idle_seconds), rss_after, 1);
  if (rss_disconnected > 0)
    row(absl::StrFormat("server RSS MiB %d s after disconnects", o.idle_seconds), rss_disconnected,
        1);
  if (storm_devices > 0) {
    row("storm: restart s", storm.restart_s);
    row(absl::StrFormat("storm: %d devices served s", storm_devices), storm.served_s);
    row("storm: retries", static_cast<double>(storm.retries), 0);
    row("storm: errors beyond backoff", static_cast<double>(storm.errors), 0);
  }
  for (const CallCounts* stats : {&load.check_ins, &load.events, &load.telemetry}) {
    if (!stats->first_error.empty())
      absl::StrAppend(&text, "first error: ", stats->first_error, "\n");
  }
  if (!storm.first_error.empty())
    absl::StrAppend(&text, "storm first refusal: ", storm.first_error, "\n");
  std::cout << text;
  const std::string json = absl::StrFormat(
      R"({"devices": %d, "connected": %d, "enroll_per_s": %.1f, "assign_s": %.3f, "target_checkins_per_s": %.0f, "checkins_per_s": %.1f, "checkin_p50_ms": %.2f, "checkin_p99_ms": %.2f, "checkins_failed": %d, "server_cpu_ms_per_checkin": %.3f, "db_cpu_ms_per_checkin": %.3f, "simulator_cpu_ms_per_checkin": %.3f, "events_failed": %d, "telemetry_failed": %d, "windows_per_s": %.1f, "upload_p99_ms": %.2f, "devices_updated": %d, "list_page_p50_ms": %.2f, "list_page_p99_ms": %.2f, "server_rss_mb_unconnected": %.1f, "server_rss_mb_before": %.1f, "server_rss_mb_peak": %.1f, "server_rss_mb_after": %.1f, "server_rss_mb_disconnected": %.1f, "storm_devices": %d, "storm_served_s": %.2f, "storm_errors": %d})",
      o.devices, connected, o.devices / enroll_s, assign_s, o.rate, checkins_per_s, p50, p99,
      static_cast<int>(load.check_ins.failed), server_cpu_ms, db_cpu_ms, simulator_cpu_ms,
      static_cast<int>(load.events.failed), static_cast<int>(load.telemetry.failed), windows_per_s,
      upload_p99, static_cast<int>(fleet.updated.load()), page_p50, page_p99, rss_unconnected,
      rss_before, load.peak_rss_mib, rss_after, rss_disconnected, storm_devices, storm.served_s,
      static_cast<int>(storm.errors));
  if (!o.json.empty()) std::ofstream(o.json) << json << "\n";
  std::cout << json << "\n";
  const bool clean = load.check_ins.failed == 0 && load.events.failed == 0 &&
                     listed == static_cast<uint64_t>(o.devices) && storm.errors == 0;
  return clean ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  edgefleet::DisableMutexDeadlockDetection();
  Options o;
  const int parsed =
      fb::ParseFlags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
        auto positive = [&value](int* out) { return absl::SimpleAtoi(value, out) && *out >= 0; };
        if (flag == "--device-address") return o.device_address = value, true;
        if (flag == "--admin-address") return o.admin_address = value, true;
        if (flag == "--http-address") return o.http_address = value, true;
        if (flag == "--ca-file") return o.ca_file = value, true;
        if (flag == "--admin-token") return o.admin_token = value, true;
        if (flag == "--model-v1") return o.model_v1 = value, true;
        if (flag == "--model-v2") return o.model_v2 = value, true;
        if (flag == "--restart-command") return o.restart_command = value, true;
        if (flag == "--json") return o.json = value, true;
        if (flag == "--devices") return positive(&o.devices) && o.devices >= 1;
        if (flag == "--connected") return positive(&o.connected);
        if (flag == "--rate") return absl::SimpleAtod(value, &o.rate) && o.rate > 0;
        if (flag == "--seconds") return absl::SimpleAtod(value, &o.seconds) && o.seconds > 0;
        if (flag == "--warmup-seconds") {
          return absl::SimpleAtod(value, &o.warmup_seconds) && o.warmup_seconds >= 0;
        }
        if (flag == "--telemetry-every") return positive(&o.telemetry_every);
        if (flag == "--telemetry-windows") {
          return positive(&o.telemetry_windows) && o.telemetry_windows >= 1;
        }
        if (flag == "--enroll-threads") return positive(&o.enroll_threads) && o.enroll_threads >= 1;
        if (flag == "--completion-threads") {
          return positive(&o.completion_threads) && o.completion_threads >= 1;
        }
        if (flag == "--list-pages") return positive(&o.list_pages);
        if (flag == "--server-pid") return positive(&o.server_pid);
        if (flag == "--db-pid") return positive(&o.db_pid);
        if (flag == "--idle-seconds") return positive(&o.idle_seconds);
        if (flag == "--storm") return positive(&o.storm);
        return false;
      });
  if (parsed >= 0) return parsed;
  if (o.device_address.empty() || o.admin_address.empty() || o.http_address.empty() ||
      o.ca_file.empty() || o.admin_token.empty() || o.model_v1.empty() || o.model_v2.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    return Run(o);
  } catch (const std::exception& e) {
    std::cerr << "edgefleet-bench-fleet: " << e.what() << "\n";
    return 1;
  }
}
