// edgefleet-bench-swap: hot swaps under Predict load (see swap_bench.h); `--host` is the
// model-holding child process it starts for itself.
#include <signal.h>

#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/swap/swap_bench.h"

namespace {

constexpr const char* kUsage =
    R"(usage: edgefleet-bench-swap --model-a A.onnx --model-b B.onnx [flags]
  --swaps N              hot swaps to perform (default 1000)
  --clients N            client threads calling Predict back to back (default 4)
  --steady-seconds S     total of the steady windows (no swap running) that interleave with
                         the swaps (default 24)
  --rounds N             swap rounds after the first 10 swaps, each followed by a steady
                         window (default 10)
  --warmup-seconds S     client warm-up before measuring (default 1)
  --rss-every N          read the host's RSS after every N swaps (default 10)
  --swap-interval-ms MS  pause between two swaps (default 0: back to back)
  --model-name NAME      (default classifier)
  --input-name NAME      the models' input (default input)
  --input-shape D,D,...  its shape (default 1,4)
  --update-nice N        nice value of the host's loading thread, as the agent's
                         --update-thread-nice (default 19; 0: same priority as inference)
  --trim-after-swap      experiment: the host calls malloc_trim(0) after every swap (the
                         agent does not)
  --json FILE            also write the report as JSON
  --check                exit 1 unless every request succeeded with the right answer
)";

bool ParseShape(const std::string& text, std::vector<int64_t>* shape) {
  shape->clear();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(part, &d) || d <= 0) return false;
    shape->push_back(d);
  }
  return !shape->empty();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  edgefleet::bench::BenchOptions options;
  edgefleet::bench::HostOptions& host = options.host;
  bool host_mode = false;
  bool check = false;
  std::string json_path;
  auto text = [](std::string* out) {
    return [out](const std::string& v) {
      *out = v;
      return true;
    };
  };
  auto integer = [](int* out) {
    return [out](const std::string& v) { return absl::SimpleAtoi(v, out) && *out >= 0; };
  };
  auto real = [](double* out) {
    return [out](const std::string& v) { return absl::SimpleAtod(v, out) && *out >= 0; };
  };
  const std::map<std::string, std::function<bool(const std::string&)>> flags = {
      {"--socket", text(&host.socket_path)},
      {"--model-a", text(&host.model_a)},
      {"--model-b", text(&host.model_b)},
      {"--model-name", text(&host.model_name)},
      {"--input-name", text(&host.input_name)},
      {"--input-shape", [&](const std::string& v) { return ParseShape(v, &host.input_shape); }},
      {"--swap-interval-ms", integer(&host.swap_interval_ms)},
      {"--update-nice", integer(&host.update_nice)},
      {"--swaps", integer(&options.swaps)},
      {"--clients", integer(&options.clients)},
      {"--rounds", integer(&options.rounds)},
      {"--rss-every", integer(&options.rss_every_swaps)},
      {"--steady-seconds", real(&options.steady_seconds)},
      {"--warmup-seconds", real(&options.warmup_seconds)},
      {"--json", text(&json_path)},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (flag == "--host" || flag == "--check" || flag == "--trim-after-swap") {
      (flag == "--host" ? host_mode : flag == "--check" ? check : host.trim_after_swap) = true;
      continue;
    }
    auto it = flags.find(flag);
    if (it == flags.end()) {
      std::cerr << "edgefleet-bench-swap: unknown flag " << flag << "\n" << kUsage;
      return 2;
    }
    if (i + 1 >= args.size() || !it->second(args[++i])) {
      std::cerr << "edgefleet-bench-swap: bad or missing value for " << flag << "\n" << kUsage;
      return 2;
    }
  }
  if (host.model_a.empty() || host.model_b.empty()) {
    std::cerr << "edgefleet-bench-swap: --model-a and --model-b are required\n" << kUsage;
    return 2;
  }
  if (host_mode) return edgefleet::bench::RunSwapHost(host, std::cin, std::cout);

  // A host that dies makes writes to its stdin fail with EPIPE instead of killing the bench.
  signal(SIGPIPE, SIG_IGN);
  options.host_binary = "/proc/self/exe";
  auto report = edgefleet::bench::RunSwapBench(options);
  if (!report.ok()) {
    std::cerr << "edgefleet-bench-swap: " << report.status() << "\n";
    return 1;
  }
  std::cout << edgefleet::bench::ReportText(*report);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << edgefleet::bench::ReportJson(*report);
    if (!out) {
      std::cerr << "edgefleet-bench-swap: cannot write " << json_path << "\n";
      return 1;
    }
  }
  if (check && (report->failed_requests != 0 || report->wrong_answers != 0)) return 1;
  return 0;
}
