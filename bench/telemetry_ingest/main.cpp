// edgefleet-bench-telemetry-ingest: a telemetry load generator against a running edgefleet-server.
// It enrolls --devices devices for real (each its own P-256 key, CSR and certificate, so each
// upload is an mTLS call as a device of its own, on its own connection), then sends windows
// shaped like a real agent's (tests/support/telemetry_windows.h: a latency sketch of about 50
// buckets, 4 to 16 feature histograms of 11 bins, a class histogram) at --rate windows/s for
// --seconds, open loop: uploads leave on schedule whether or not earlier ones were answered, and
// an upload's time counts from when it was due (no coordinated omission). One window per upload,
// as an agent sends each cut window, or --windows-per-upload K, as an agent back from offline.
//
// Set-up, through the admin API: a model version for the windows to name, and an enrollment
// token for the devices (whose inventory says they run it). Prints a table, then one JSON line.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/flags.h"
#include "bench/common/fleet_client.h"
#include "common/core/process.h"
#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/device.grpc.pb.h"
#include "tests/support/telemetry_windows.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace v1 = edgefleet::v1;

constexpr const char* kUsage =
    R"(usage: edgefleet-bench-telemetry-ingest --device-address H:P --admin-address H:P --ca-file F
           --admin-token T --model-file F [flags]
  --devices N              devices enrolled and sending (default 2000)
  --rate R                 windows per second, all devices together (default 5000)
  --seconds S              how long the load runs (default 60)
  --windows-per-upload K   windows in each upload (default 1: one upload per window)
  --enroll-threads N       parallel enrollments (default 8)
  --completion-threads N   threads reading answers (default 2)
  --model-name NAME        the model the windows are of (default bench)
  --json FILE              also write the result line there
)";

struct Options {
  std::string device_address;
  std::string admin_address;
  std::string ca_file;
  std::string admin_token;
  std::string model_file;
  std::string model_name = "bench";
  int devices = 2000;
  double rate = 5000;
  double seconds = 60;
  int windows_per_upload = 1;
  int enroll_threads = 8;
  int completion_threads = 2;
  std::string json;
};

// The model version the windows name, and a token that enrolls every device.
std::string SetUp(const Options& o) {
  auto admin = edgefleet::bench::AdminStub(o.admin_address);
  edgefleet::bench::PushModelVersion(*admin, o.admin_token,
                                     edgefleet::bench::ClassifierMetadata(o.model_name, "1"),
                                     edgefleet::bench::ReadFileOrThrow(o.model_file));
  return edgefleet::bench::CreateEnrollmentToken(*admin, o.admin_token,
                                                 static_cast<uint32_t>(o.devices));
}

struct Device {
  std::string id;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::DeviceService::Stub> stub;
  uint64_t stream_id = 0;
  std::atomic<uint64_t> next_sequence{1};
};

// One upload in flight.
struct Call {
  grpc::ClientContext context;
  v1::UploadTelemetryRequest request;
  v1::UploadTelemetryResponse response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::UploadTelemetryResponse>> reader;
  Clock::time_point due;
  int windows = 0;
};

struct Results {
  std::mutex mu;
  std::vector<double> latency_ms;  // from due to answered, successful uploads
  uint64_t ok_uploads = 0;
  uint64_t failed_uploads = 0;
  uint64_t accepted_windows = 0;
  uint64_t rejected_windows = 0;
  std::string first_error;
};

using edgefleet::bench::Quantile;

int Run(const Options& o) {
  const std::string ca = edgefleet::bench::ReadFileOrThrow(o.ca_file);
  const std::string token = SetUp(o);

  // Enrollment: real, one device after another on each of a few threads.
  std::mt19937_64 seed_rng(std::random_device{}());
  const uint64_t run_tag = seed_rng() % 1000000;
  v1::Inventory inventory;
  auto* model = inventory.add_models();
  model->set_model_name(o.model_name);
  model->set_version("1");
  model->set_state(v1::MODEL_STATE_SERVING);
  std::vector<std::unique_ptr<Device>> devices(static_cast<size_t>(o.devices));
  const auto enroll_start = Clock::now();
  edgefleet::bench::ForEachInParallel(o.devices, o.enroll_threads, [&](int i) {
    auto d = std::make_unique<Device>();
    d->id = absl::StrFormat("bench-%06d-%06d", run_tag, i);
    const auto identity =
        edgefleet::bench::EnrollDevice(o.device_address, ca, token, d->id, inventory);
    d->stream_id = (std::hash<std::string>{}(d->id) >> 2) + 1;
    d->channel = edgefleet::bench::OpenDeviceChannel(o.device_address, ca, identity);
    d->stub = v1::DeviceService::NewStub(d->channel);
    devices[static_cast<size_t>(i)] = std::move(d);
  });
  const double enroll_seconds = std::chrono::duration<double>(Clock::now() - enroll_start).count();
  std::cerr << absl::StrFormat("enrolled %d devices in %.1f s\n", o.devices, enroll_seconds);

  // Connections: a fleet in its steady state has its mTLS sessions up; the handshakes of a
  // reconnect storm are bench/fleet's subject, not ingest's.
  {
    const auto connect_start = Clock::now();
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (auto& d : devices) channels.push_back(d->channel);
    edgefleet::bench::ConnectAll(channels, 120);
    std::cerr << absl::StrFormat(
        "connected %d devices in %.1f s\n", o.devices,
        std::chrono::duration<double>(Clock::now() - connect_start).count());
  }

  // Window templates: 4 to 16 features, varied statistics; each upload copies one.
  std::vector<v1::TelemetryWindow> templates;
  {
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int> features(4, 16);
    for (int i = 0; i < 128; ++i) {
      edgefleet::test::WindowShape shape{.features = features(rng), .classes = 3, .requests = 600};
      templates.push_back(
          edgefleet::test::MakeTelemetryWindow(rng, shape, o.model_name, "1", 0, 60));
    }
  }
  uint64_t template_bytes = 0;
  for (const auto& t : templates) template_bytes += t.ByteSizeLong();

  // Answers: read on their own threads, counted as they come.
  Results results;
  std::vector<grpc::CompletionQueue> queues(static_cast<size_t>(o.completion_threads));
  std::vector<std::thread> readers;
  for (auto& cq : queues) {
    readers.emplace_back([&cq, &results] {
      void* tag;
      bool ok;
      std::vector<double> local;
      while (cq.Next(&tag, &ok)) {
        std::unique_ptr<Call> call(static_cast<Call*>(tag));
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - call->due).count();
        std::lock_guard lock(results.mu);
        if (ok && call->status.ok()) {
          ++results.ok_uploads;
          results.latency_ms.push_back(ms);
          results.accepted_windows +=
              static_cast<uint64_t>(call->response.accepted_sequences_size());
          results.rejected_windows += static_cast<uint64_t>(call->response.rejected_size());
          if (call->response.rejected_size() > 0 && results.first_error.empty())
            results.first_error = "rejected: " + call->response.rejected(0).reason();
        } else {
          ++results.failed_uploads;
          if (results.first_error.empty()) results.first_error = call->status.error_message();
        }
      }
    });
  }

  // The load: uploads due at a fixed pace, devices in a shuffled round robin.
  const double uploads_per_s = o.rate / o.windows_per_upload;
  const auto interval = std::chrono::duration<double>(1.0 / uploads_per_s);
  const uint64_t total_uploads = static_cast<uint64_t>(uploads_per_s * o.seconds);
  std::vector<size_t> order(devices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), seed_rng);
  uint64_t late_sends = 0;  // uploads sent more than 10 ms after they were due
  const auto start = Clock::now();
  const auto system_start = std::chrono::system_clock::now();
  for (uint64_t n = 0; n < total_uploads; ++n) {
    const Clock::time_point due =
        start + std::chrono::duration_cast<Clock::duration>(interval * static_cast<double>(n));
    const auto now = Clock::now();
    if (due > now) {
      std::this_thread::sleep_until(due);
    } else if (now - due > 10ms) {
      ++late_sends;
    }
    Device& d = *devices[order[n % order.size()]];
    auto call = std::make_unique<Call>();
    call->due = due;
    call->windows = o.windows_per_upload;
    call->request.set_stream_id(d.stream_id);
    const int64_t end_unix =
        std::chrono::duration_cast<std::chrono::seconds>(
            (system_start +
             std::chrono::duration_cast<std::chrono::system_clock::duration>(due - start))
                .time_since_epoch())
            .count();
    for (int k = 0; k < o.windows_per_upload; ++k) {
      v1::TelemetryWindow* w = call->request.add_windows();
      *w = templates[(n * 7 + static_cast<uint64_t>(k)) % templates.size()];
      w->set_sequence(d.next_sequence++);
      w->mutable_window_start()->set_seconds(end_unix - 60);
      w->mutable_window_end()->set_seconds(end_unix);
    }
    call->context.set_deadline(std::chrono::system_clock::now() + 30s);
    grpc::CompletionQueue& cq = queues[n % queues.size()];
    call->reader = d.stub->AsyncUploadTelemetry(&call->context, call->request, &cq);
    Call* raw = call.release();
    raw->reader->Finish(&raw->response, &raw->status, raw);
  }
  const double send_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Wait for the answers still due (each call has its deadline), then stop the readers.
  while (true) {
    {
      std::lock_guard lock(results.mu);
      if (results.ok_uploads + results.failed_uploads >= total_uploads) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  const double total_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& cq : queues) cq.Shutdown();
  for (auto& t : readers) t.join();

  const double windows_per_s = static_cast<double>(results.accepted_windows) / total_seconds;
  const double p50 = Quantile(results.latency_ms, 0.5);
  const double p99 = Quantile(results.latency_ms, 0.99);
  std::string text = absl::StrFormat(
      "load: %d devices (enrolled in %.1f s), target %.0f windows/s for %.0f s, %d window(s) per "
      "upload, window %.0f bytes on average\n"
      "%-28s %12s\n%-28s %12d\n%-28s %12d\n%-28s %12d\n%-28s %12d\n%-28s %12d\n%-28s %12.1f\n"
      "%-28s %12.1f\n%-28s %12.2f\n%-28s %12.2f\n%-28s %12.2f\n",
      o.devices, enroll_seconds, o.rate, o.seconds, o.windows_per_upload,
      static_cast<double>(template_bytes) / static_cast<double>(templates.size()), "", "value",
      "uploads sent", static_cast<int>(total_uploads), "uploads answered ok",
      static_cast<int>(results.ok_uploads), "uploads failed",
      static_cast<int>(results.failed_uploads), "windows accepted",
      static_cast<int>(results.accepted_windows), "windows refused",
      static_cast<int>(results.rejected_windows), "sending took s", send_seconds,
      "windows/s achieved", windows_per_s, "upload p50 ms", p50, "upload p99 ms", p99,
      "sends late by >10 ms (%)",
      100.0 * static_cast<double>(late_sends) /
          static_cast<double>(std::max<uint64_t>(1, total_uploads)));
  if (!results.first_error.empty()) text += "first error: " + results.first_error + "\n";
  std::cout << text;
  const std::string json = absl::StrFormat(
      R"({"devices": %d, "target_windows_per_s": %.0f, "seconds": %.0f, "windows_per_upload": %d, "windows_per_s": %.1f, "upload_p50_ms": %.2f, "upload_p99_ms": %.2f, "uploads_ok": %d, "uploads_failed": %d, "windows_refused": %d})",
      o.devices, o.rate, o.seconds, o.windows_per_upload, windows_per_s, p50, p99,
      static_cast<int>(results.ok_uploads), static_cast<int>(results.failed_uploads),
      static_cast<int>(results.rejected_windows));
  if (!o.json.empty()) std::ofstream(o.json) << json << "\n";
  std::cout << json << "\n";
  return results.failed_uploads == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  edgefleet::DisableMutexDeadlockDetection();
  Options o;
  const int parsed = edgefleet::bench::ParseFlags(
      argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
        bool ok = true;
        if (flag == "--device-address") {
          o.device_address = value;
        } else if (flag == "--admin-address") {
          o.admin_address = value;
        } else if (flag == "--ca-file") {
          o.ca_file = value;
        } else if (flag == "--admin-token") {
          o.admin_token = value;
        } else if (flag == "--model-file") {
          o.model_file = value;
        } else if (flag == "--model-name") {
          o.model_name = value;
        } else if (flag == "--devices") {
          ok = absl::SimpleAtoi(value, &o.devices) && o.devices >= 1;
        } else if (flag == "--rate") {
          ok = absl::SimpleAtod(value, &o.rate) && o.rate > 0;
        } else if (flag == "--seconds") {
          ok = absl::SimpleAtod(value, &o.seconds) && o.seconds > 0;
        } else if (flag == "--windows-per-upload") {
          ok = absl::SimpleAtoi(value, &o.windows_per_upload) && o.windows_per_upload >= 1 &&
               o.windows_per_upload <= 16;
        } else if (flag == "--enroll-threads") {
          ok = absl::SimpleAtoi(value, &o.enroll_threads) && o.enroll_threads >= 1;
        } else if (flag == "--completion-threads") {
          ok = absl::SimpleAtoi(value, &o.completion_threads) && o.completion_threads >= 1;
        } else if (flag == "--json") {
          o.json = value;
        } else {
          ok = false;
        }
        return ok;
      });
  if (parsed >= 0) return parsed;
  if (o.device_address.empty() || o.admin_address.empty() || o.ca_file.empty() ||
      o.admin_token.empty() || o.model_file.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    return Run(o);
  } catch (const std::exception& e) {
    std::cerr << "edgefleet-bench-telemetry-ingest: " << e.what() << "\n";
    return 1;
  }
}
