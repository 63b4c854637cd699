// Throughput of the telemetry roll-up job: stores N realistic windows (latency sketch, 4
// feature histograms of 10 bins, 3 output classes; 10 models x 2 versions x 5 hw values, one
// upload of 100 windows per transaction as ingest does), then times the job merging them all.
//
//   createdb rollup_bench && edgefleet-bench-rollup --database-url postgresql://.../rollup_bench
//
// The database must be empty (the bench applies the migrations). Prints the store and roll-up
// rates; the roll-up must stay well above the fleet's 1,667 windows/s (100,000 devices, one
// window a minute) and the 5,000 windows/s ingest target.
#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/core/clock.h"
#include "common/metrics/metrics.h"
#include "common/telemetry/telemetry_codec.h"
#include "server/metrics/server_metrics.h"
#include "server/store/database.h"
#include "server/store/rollup_repo.h"
#include "server/store/telemetry_repo.h"
#include "server/telemetry/rollup_job.h"

namespace {

using namespace edgefleet;
using namespace edgefleet::server;

constexpr const char* kUsage =
    "usage: edgefleet-bench-rollup --database-url URL [--windows N (100000)] [--batch N "
    "(20000)]\n";

v1::TelemetryWindow MakeWindow(uint64_t sequence, int64_t start, std::mt19937& rng) {
  v1::TelemetryWindow w;
  w.set_sequence(sequence);
  w.set_model_name("model-" + std::to_string(sequence % 10));
  w.set_version(std::to_string(1 + sequence / 10 % 2));
  w.mutable_window_start()->set_seconds(start);
  w.mutable_window_end()->set_seconds(start + 60);
  std::lognormal_distribution<double> latency(std::log(0.004), 0.5);
  edgefleet::telemetry::LatencySketch sketch;
  for (int i = 0; i < 60; ++i) sketch.Add(latency(rng));
  *w.mutable_latency() = edgefleet::telemetry::ToProto(sketch);
  w.set_request_count(60);
  std::uniform_int_distribution<uint64_t> bin(0, 10);
  for (int f = 0; f < 4; ++f) {
    v1::FeatureWindow* h = w.add_features();
    for (int b = 0; b < 10; ++b) h->add_bins(bin(rng));
    h->set_min(-1);
    h->set_max(1);
    h->set_sum(3.5);
  }
  for (int b = 0; b < 3; ++b) w.mutable_outputs()->add_bins(20);
  w.set_profile_sha256(std::string(32, 'p'));
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  int64_t windows = 100'000;
  int64_t batch = 20'000;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    const bool has_value = i + 1 < args.size();
    if (flag == "--database-url" && has_value) {
      url = args[++i];
    } else if (flag == "--windows" && has_value && absl::SimpleAtoi(args[i + 1], &windows)) {
      ++i;
    } else if (flag == "--batch" && has_value && absl::SimpleAtoi(args[i + 1], &batch)) {
      ++i;
    } else {
      std::cerr << kUsage;
      return 2;
    }
  }
  if (url.empty() || windows <= 0 || batch <= 0) {
    std::cerr << kUsage;
    return 2;
  }
  auto db = Database::Open({.url = url, .pool_size = 2});
  if (!db.ok() || !(*db)->Migrate().ok()) {
    std::cerr << "cannot open or migrate " << url << "\n";
    return 1;
  }
  SystemClock clock;
  const int64_t now = ToUnixSeconds(clock.Now());
  TelemetryRepo windows_repo;
  if (auto s = (*db)->Transact(
          "partitions",
          [&](Tx& tx) { return windows_repo.EnsurePartitions(tx, now - 86400, now).status(); });
      !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  static const char* kHw[] = {"jetson", "rpi4", "x86", "coral", ""};
  std::mt19937 rng(1);
  const auto store_start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < windows; first += 100) {
    auto s = (*db)->Transact("store windows", [&](Tx& tx) -> absl::Status {
      for (int64_t i = first; i < std::min(windows, first + 100); ++i) {
        v1::TelemetryWindow w = MakeWindow(static_cast<uint64_t>(i), now - 3600 + i % 3600, rng);
        auto r = windows_repo.InsertWindow(tx, "dev-" + std::to_string(i % 100'000), 1, w,
                                           kHw[i % 5], now);
        if (!r.ok()) return r.status();
      }
      return absl::OkStatus();
    });
    if (!s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
  }
  const double store_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - store_start).count();

  metrics::Registry registry;
  ServerMetrics metrics(registry);
  RollupRepo repo;
  server::telemetry::DatabaseRollupStore store(repo);
  server::telemetry::RollupJob job(**db, repo, store, clock, metrics,
                                   {.max_windows_per_run = static_cast<size_t>(batch)});
  const auto start = std::chrono::steady_clock::now();
  auto run = job.RunUntilCaughtUp();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!run.ok()) {
    std::cerr << run.status() << "\n";
    return 1;
  }
  std::cout << "stored " << windows << " windows in " << store_s << " s ("
            << static_cast<int64_t>(static_cast<double>(windows) / store_s)
            << " windows/s, one connection, 100 per transaction)\n"
            << "rolled up " << run->windows << " windows into " << run->rows << " rows in "
            << seconds
            << " s: " << static_cast<int64_t>(static_cast<double>(run->windows) / seconds)
            << " windows/s (batch " << batch << ")\n";
  return run->windows == static_cast<size_t>(windows) ? 0 : 1;
}
