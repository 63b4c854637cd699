// What telemetry adds to one Predict on the device: WindowRecorder::Record for a 4-feature vector
// input and a 3-class answer (the budget: under 2 us), for a 3x224x224 image (one pass
// over the pixels for the channel means), and with 4 threads recording into one window.
// Run: ninja -C build edgefleet-bench-telemetry && build/bin/edgefleet-bench-telemetry
#include <benchmark/benchmark.h>

#include <random>

#include "agent/telemetry/window_recorder.h"

namespace edgefleet::agent {
namespace {

BinningProfile Deciles(size_t features) {
  BinningProfile p;
  for (size_t f = 0; f < features; ++f) {
    std::vector<double> edges;
    for (int d = 1; d <= 9; ++d) edges.push_back(d / 10.0);
    p.feature_edges.push_back(edges);
  }
  p.output_edges = {0.5, 1.5};
  return p;
}

WindowRecorder& SharedRecorder() {
  static WindowRecorder recorder("classifier", "1", Deciles(4), std::chrono::system_clock::now());
  return recorder;
}

void BM_RecordVector4(benchmark::State& state) {
  WindowRecorder& recorder = SharedRecorder();
  std::mt19937 rng(static_cast<unsigned>(state.thread_index()));
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<std::vector<TensorData>> inputs(64);
  for (auto& in : inputs)
    in = {{.name = "x", .shape = {1, 4}, .data = {u(rng), u(rng), u(rng), u(rng)}}};
  const absl::StatusOr<std::vector<TensorData>> answer =
      std::vector<TensorData>{{.name = "y", .shape = {1, 3}, .data = {0.2f, 0.7f, 0.1f}}};
  size_t i = 0;
  for (auto _ : state) {
    ++i;
    recorder.Record(inputs[i % inputs.size()], answer, std::chrono::microseconds(150 + i % 97));
  }
  if (state.thread_index() == 0) state.SetLabel("4 features, 3 classes");
}
BENCHMARK(BM_RecordVector4);
BENCHMARK(BM_RecordVector4)->Threads(4)->UseRealTime();

void BM_RecordImage224(benchmark::State& state) {
  WindowRecorder recorder("detector", "1", Deciles(3), std::chrono::system_clock::now());
  std::vector<TensorData> in{
      {.name = "img", .shape = {1, 3, 224, 224}, .data = std::vector<float>(3 * 224 * 224, 0.5f)}};
  const absl::StatusOr<std::vector<TensorData>> answer = std::vector<TensorData>{
      {.name = "y", .shape = {1, 1000}, .data = std::vector<float>(1000, 0.001f)}};
  for (auto _ : state) recorder.Record(in, answer, std::chrono::milliseconds(12));
}
BENCHMARK(BM_RecordImage224);

}  // namespace
}  // namespace edgefleet::agent

BENCHMARK_MAIN();
