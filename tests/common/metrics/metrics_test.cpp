#include "common/metrics/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::metrics {
namespace {

TEST(MetricsTest, CounterAndGaugeValues) {
  Registry registry;
  Counter& c = registry.AddCounter("edgefleet_requests_total", "Requests.").Add({});
  c.Increment();
  c.Increment(2.5);
  c.Increment(-4);  // ignored: counters only go up
  EXPECT_DOUBLE_EQ(c.Value(), 3.5);

  Gauge& g = registry.AddGauge("edgefleet_queue_depth", "Queue depth.").Add({});
  g.Set(10);
  g.Increment(3);
  g.Decrement();
  EXPECT_DOUBLE_EQ(g.Value(), 12);
}

TEST(MetricsTest, SerializesSmallRegistryExactly) {
  Registry registry;
  auto& requests = registry.AddCounter("edgefleet_requests_total", "Requests served.");
  requests.Add({{"method", "GET"}, {"code", "200"}}).Increment(3);
  requests.Add({{"method", "POST"}, {"code", "500"}}).Increment();
  registry.AddGauge("edgefleet_active_models", "Models currently loaded.").Add({}).Set(2);
  auto& latency = registry.AddHistogram("edgefleet_latency_seconds", "Latency.", {0.1, 1});
  latency.Add({{"model", "det"}}).Observe(0.05);
  registry.AddGauge("edgefleet_empty", "No children yet.");

  const std::string expected =
      "# HELP edgefleet_active_models Models currently loaded.\n"
      "# TYPE edgefleet_active_models gauge\n"
      "edgefleet_active_models 2\n"
      "# HELP edgefleet_empty No children yet.\n"
      "# TYPE edgefleet_empty gauge\n"
      "# HELP edgefleet_latency_seconds Latency.\n"
      "# TYPE edgefleet_latency_seconds histogram\n"
      "edgefleet_latency_seconds_bucket{model=\"det\",le=\"0.1\"} 1\n"
      "edgefleet_latency_seconds_bucket{model=\"det\",le=\"1\"} 1\n"
      "edgefleet_latency_seconds_bucket{model=\"det\",le=\"+Inf\"} 1\n"
      "edgefleet_latency_seconds_sum{model=\"det\"} 0.05\n"
      "edgefleet_latency_seconds_count{model=\"det\"} 1\n"
      "# HELP edgefleet_requests_total Requests served.\n"
      "# TYPE edgefleet_requests_total counter\n"
      "edgefleet_requests_total{code=\"200\",method=\"GET\"} 3\n"
      "edgefleet_requests_total{code=\"500\",method=\"POST\"} 1\n";
  EXPECT_EQ(registry.Serialize(), expected);
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  Registry registry;
  registry.AddGauge("edgefleet_escape", "Help with \\ and\nnewline and \"quotes\".")
      .Add({{"path", "C:\\dir\n\"x\""}})
      .Set(1);
  EXPECT_EQ(registry.Serialize(),
            "# HELP edgefleet_escape Help with \\\\ and\\nnewline and \"quotes\".\n"
            "# TYPE edgefleet_escape gauge\n"
            "edgefleet_escape{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST(MetricsTest, SameLabelsReturnSameChild) {
  Registry registry;
  auto& family = registry.AddCounter("edgefleet_x_total", "X.");
  Counter& a = family.Add({{"k", "v"}});
  // Many more children must not move the first one (stable references).
  for (int i = 0; i < 1000; ++i) family.Add({{"k", std::to_string(i)}});
  Counter& b = family.Add({{"k", "v"}});
  EXPECT_EQ(&a, &b);
  EXPECT_TRUE(family.Has({{"k", "v"}}));
  EXPECT_FALSE(family.Has({{"k", "w"}}));
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry registry;
  Histogram& h = registry.AddHistogram("edgefleet_h_seconds", "H.", {1, 2, 5}).Add({});
  for (double v : {0.5, 1.0, 1.5, 3.0, 7.0, 100.0}) h.Observe(v);
  Histogram::Snapshot s = h.Collect();
  EXPECT_EQ(s.upper_bounds, (std::vector<double>{1, 2, 5}));
  // le is inclusive: 1.0 falls in the le="1" bucket.
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{2, 3, 4, 6}));
  EXPECT_DOUBLE_EQ(s.sum, 113);
  EXPECT_EQ(s.count, 6u);

  const std::string text = registry.Serialize();
  EXPECT_NE(text.find("edgefleet_h_seconds_bucket{le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_h_seconds_bucket{le=\"5\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_h_seconds_bucket{le=\"+Inf\"} 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_h_seconds_sum 113\n"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_h_seconds_count 6\n"), std::string::npos) << text;
}

TEST(MetricsTest, ObserveMultipleAddsPerBucketCountsAndTheSum) {
  Registry registry;
  Histogram& h = registry.AddHistogram("edgefleet_m_seconds", "M.", {1, 2}).Add({});
  h.Observe(1.5);
  h.ObserveMultiple({2, 0, 3}, 20.5);
  Histogram::Snapshot s = h.Collect();
  EXPECT_EQ(s.cumulative_counts, (std::vector<uint64_t>{2, 3, 6}));
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.sum, 22.0);
  // A vector of the wrong size or with a negative count changes nothing.
  h.ObserveMultiple({1, 1}, 1);
  h.ObserveMultiple({1, -1, 1}, 1);
  EXPECT_EQ(h.Collect().count, 6u);
  EXPECT_DOUBLE_EQ(h.Collect().sum, 22.0);
}

TEST(MetricsTest, FormatsValuesLikePrometheus) {
  EXPECT_EQ(FormatValue(0.0005), "0.0005");
  EXPECT_EQ(FormatValue(0.00001), "1e-05");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(10), "10");
  EXPECT_EQ(FormatValue(123456), "123456");
  EXPECT_EQ(FormatValue(1e6), "1e+06");
  EXPECT_EQ(FormatValue(1234567), "1.234567e+06");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsTest, DefaultLatencyBucketsSpanHalfMillisecondToTenSeconds) {
  std::vector<double> b = DefaultLatencyBuckets();
  ASSERT_FALSE(b.empty());
  EXPECT_DOUBLE_EQ(b.front(), 0.0005);
  EXPECT_DOUBLE_EQ(b.back(), 10);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

TEST(MetricsTest, RejectsInvalidNamesAndConflicts) {
  Registry registry;
  EXPECT_THROW(registry.AddGauge("1bad", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddGauge("bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddGauge("", "x"), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("edgefleet_requests", "no _total"), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("edgefleet_h", "x", {2, 1}), std::invalid_argument);

  auto& g = registry.AddGauge("edgefleet_g", "G.");
  EXPECT_EQ(&registry.AddGauge("edgefleet_g", "G."), &g);  // identical re-add is idempotent
  EXPECT_THROW(registry.AddGauge("edgefleet_g", "Other help."), std::invalid_argument);
  EXPECT_THROW(registry.AddCounter("edgefleet_g", "G."), std::invalid_argument);  // no _total
  EXPECT_THROW(g.Add({{"bad-label", "v"}}), std::invalid_argument);
  EXPECT_THROW(g.Add({{"__reserved", "v"}}), std::invalid_argument);

  auto& h = registry.AddHistogram("edgefleet_h_seconds", "H.", {1});
  EXPECT_THROW(h.Add({{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("edgefleet_h_seconds", "H.", {2}), std::invalid_argument);
}

TEST(MetricsTest, ConcurrentIncrementsSumExactly) {
  Registry registry;
  auto& counters = registry.AddCounter("edgefleet_c_total", "C.");
  auto& hist = registry.AddHistogram("edgefleet_h_seconds", "H.", {0.5});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Add() from many threads must hand back the same child for the same labels.
        counters.Add({{"shared", "yes"}}).Increment();
        counters.Add({{"thread", std::to_string(t % 2)}}).Increment(2);
        hist.Add({}).Observe(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_DOUBLE_EQ(counters.Add({{"shared", "yes"}}).Value(), kThreads * kPerThread);
  EXPECT_DOUBLE_EQ(counters.Add({{"thread", "0"}}).Value(), kThreads * kPerThread);
  Histogram::Snapshot s = hist.Add({}).Collect();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(s.cumulative_counts.back(), s.count);
  EXPECT_DOUBLE_EQ(s.sum, kThreads * kPerThread);
}

TEST(MetricsTest, CollectHookRunsBeforeEachSerialize) {
  Registry registry;
  Gauge& devices = registry.AddGauge("edgefleet_devices", "Devices.").Add({});
  int calls = 0;
  registry.AddCollectHook([&] {
    ++calls;
    devices.Set(calls * 10);
  });
  EXPECT_NE(registry.Serialize().find("edgefleet_devices 10\n"), std::string::npos);
  EXPECT_NE(registry.Serialize().find("edgefleet_devices 20\n"), std::string::npos);
  EXPECT_EQ(calls, 2);
}

TEST(MetricsTest, CollectHookMayAddFamilies) {
  Registry registry;
  registry.AddCollectHook(
      [&] { registry.AddGauge("edgefleet_late", "Added by a hook.").Add({}).Set(1); });
  EXPECT_NE(registry.Serialize().find("edgefleet_late 1\n"), std::string::npos);
}

TEST(MetricsTest, PromtoolAcceptsRichRegistry) {
  const char* promtool = "/usr/bin/promtool";
  if (!std::filesystem::exists(promtool)) GTEST_SKIP() << "promtool not installed";

  Registry registry;
  auto& requests = registry.AddCounter("edgefleet_http_requests_total", "HTTP requests served.");
  requests.Add({{"method", "GET"}, {"code", "200"}}).Increment(12345678);
  requests.Add({{"method", "POST"}, {"code", "500"}, {"path", "a\\b\n\"c\""}}).Increment();
  registry.AddCounter("edgefleet_unused_total", "Never incremented.");
  auto& rollout = registry.AddGauge("edgefleet_rollout_devices", "Devices per rollout state.");
  rollout.Add({{"state", "probation"}}).Set(3);
  rollout.Add({{"state", "failed"}}).Set(-1.5e-7);
  registry.AddGauge("edgefleet_build_info", "Build info; help with \\ and\nnewline.")
      .Add({{"version", "0.1.0"}})
      .Set(1);
  auto& latency = registry.AddHistogram("edgefleet_inference_latency_seconds", "Inference latency.",
                                        DefaultLatencyBuckets());
  for (double v : {0.0001, 0.003, 0.2, 4.0, 50.0}) latency.Add({{"model", "det"}}).Observe(v);
  latency.Add({{"model", "cls"}});
  registry.AddHistogram("edgefleet_payload_bytes", "Payload sizes.", {1e3, 1e6, 1e9})
      .Add({})
      .Observe(2e6);

  std::string tmpl = (std::filesystem::temp_directory_path() / "metrics_test_XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::filesystem::path dir = tmpl;
  const auto file = dir / "metrics.txt";
  {
    std::ofstream out(file);
    out << registry.Serialize();
  }
  const std::string cmd = std::string(promtool) + " check metrics < " + file.string() + " > " +
                          (dir / "promtool.log").string() + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream log(dir / "promtool.log");
  std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "promtool output:\n"
                                                     << log_text << "\nmetrics:\n"
                                                     << registry.Serialize();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgefleet::metrics
