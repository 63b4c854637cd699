// edgefleet-bench-predict-telemetry: what field telemetry costs one Predict, seen by the
// application. Two real edgefleet-agents on loopback serve the same models from a real server
// (the integration tests' harness): one records telemetry, the other runs with
// --disable-telemetry true (no recorder on the request path). A client sends Predicts over each
// agent's Unix socket, one at a time, in rounds that alternate between the two agents (on, off,
// off, on, ...) so that drift of the machine's load cancels out. Halfway, both agents restart
// with their roles swapped: the two processes are not scheduled alike (a fixed difference of
// tens of microseconds on a loaded machine), and with each one "on" for half the rounds that
// difference cancels too, and is reported (the A/A difference: agent 0 minus agent 1 with
// telemetry out of it). The difference of the rounds' medians gets a 95% confidence interval
// (Student t over the paired rounds).
//
// Models: the test suite's classifier (4 features -> 3 classes) and an image classifier
// (3x224x224 -> 10 classes, bench/predict_telemetry/make_models.py).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/common/flags.h"
#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/inference.grpc.pb.h"
#include "tests/support/fleet_harness.h"
#include "tests/support/process.h"
#include "tests/support/test_database.h"

namespace {

using namespace std::chrono_literals;
using edgefleet::test::AgentHarness;
using edgefleet::test::ServerHarness;
namespace v1 = edgefleet::v1;

constexpr const char* kUsage =
    R"(usage: edgefleet-bench-predict-telemetry [flags]   (needs EDGEFLEET_PG_URL: a database is created and dropped)
  --rounds R          rounds per agent and model, alternating on/off; half with the roles
                      swapped (default 20, even)
  --requests N        Predicts per round (default 500; the image model gets N/5)
  --bin-dir DIR       edgefleet-server and edgefleet-agent (default build/bin)
  --models DIR        make_models.py's output of the test suite (default build/testdata)
  --image-model FILE  image224.onnx (default: DIR/image224.onnx of --models)
  --json FILE         also write the result as JSON
)";

struct Options {
  int rounds = 20;
  int requests = 500;
  std::string bin_dir = "build/bin";
  std::string models = "build/testdata";
  std::string image_model;
  std::string json;
};

struct ModelCase {
  std::string name;   // model name on the server
  std::string label;  // for the report
  v1::PredictRequest request;
  int requests_per_round = 0;
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom (table, then normal).
double TQuantile975(int df) {
  static const double kTable[] = {12.706, 4.303, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
                                  2.228,  2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110,
                                  2.101,  2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060,
                                  2.056,  2.052, 2.048, 2.045, 2.042, 2.021};
  if (df <= 0) return NAN;
  if (df <= 30) return kTable[df - 1];
  return df <= 60 ? 2.0 : 1.96;
}

struct MeanCi {
  double mean = 0;
  double half_width = 0;  // 95%
};
MeanCi MeanWithCi(const std::vector<double>& v) {
  MeanCi r;
  if (v.empty()) return r;
  for (double x : v) r.mean += x;
  r.mean /= static_cast<double>(v.size());
  if (v.size() < 2) return r;
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  const double sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  r.half_width =
      TQuantile975(static_cast<int>(v.size()) - 1) * sd / std::sqrt(static_cast<double>(v.size()));
  return r;
}

v1::Tensor Tensor(const std::string& name, std::vector<int64_t> shape, size_t n, uint32_t seed) {
  v1::Tensor t;
  t.set_name(name);
  for (int64_t d : shape) t.add_shape(d);
  // A cheap deterministic pattern in [0, 1): the values do not matter to the cost.
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    t.add_data(static_cast<float>(x >> 8) / 16777216.0f);
  }
  return t;
}

// Round-trip times in microseconds of `n` Predicts, one at a time, on `stub`; false on an error.
bool RunRound(v1::InferenceService::Stub& stub, const v1::PredictRequest& request, int n,
              std::vector<double>* us, std::string* error) {
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::PredictResponse response;
    const auto start = std::chrono::steady_clock::now();
    grpc::Status s = stub.Predict(&context, request, &response);
    const auto end = std::chrono::steady_clock::now();
    if (!s.ok()) {
      *error = s.error_message();
      return false;
    }
    us->push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  return true;
}

bool Serves(v1::InferenceService::Stub& stub, const std::vector<std::string>& models) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 2s);
  v1::ListLocalModelsResponse response;
  if (!stub.ListModels(&context, v1::ListLocalModelsRequest(), &response).ok()) return false;
  for (const std::string& name : models) {
    bool found = false;
    for (const auto& m : response.models()) found |= m.model_name() == name;
    if (!found) return false;
  }
  return true;
}

int Fail(const std::string& message, ServerHarness* server = nullptr) {
  std::cerr << "edgefleet-bench-predict-telemetry: " << message << "\n";
  if (server != nullptr) {
    std::cerr << "---- server log ----\n"
              << edgefleet::test::ReadFileTail(server->log_path(), 4000) << "\n";
  }
  return 1;
}

int Run(const Options& o) {
  edgefleet::test::TestDatabase db;
  edgefleet::test::TempDir tmp;
  ServerHarness server(o.bin_dir, tmp.Sub("server"), db.url());
  server.Start();
  v1::EnrollmentToken token;
  if (auto s = server.CreateEnrollmentToken(2, {}, &token); !s.ok())
    return Fail("enrollment token: " + s.error_message(), &server);
  // Agent 0 records telemetry in the first half of the rounds, agent 1 in the second. Windows
  // are cut at the default minute, as in the field (the harness's 1 s would upload 60 times as
  // often).
  std::vector<std::unique_ptr<AgentHarness>> agents;
  auto start_agent = [&](size_t i, bool telemetry) {
    std::vector<std::string> extra = {"--telemetry-interval-seconds", "60"};
    if (!telemetry) extra.insert(extra.end(), {"--disable-telemetry", "true"});
    agents[i]->set_extra_args(extra);
    agents[i]->Start(server.device_address(), server.ca_file(), token.token());
  };
  for (size_t i = 0; i < 2; ++i) {
    agents.push_back(std::make_unique<AgentHarness>(o.bin_dir, tmp.Sub(absl::StrCat("agent-", i)),
                                                    absl::StrCat("agent-", i)));
    start_agent(i, i == 0);
  }

  v1::ModelVersion pushed;
  if (auto s = server.PushClassifier("vector4", "1", o.models + "/classifier_v1.onnx", &pushed);
      !s.ok())
    return Fail("push vector4: " + s.error_message(), &server);
  {
    const std::string path = o.image_model.empty() ? o.models + "/image224.onnx" : o.image_model;
    auto bytes = edgefleet::test::ReadFile(path);
    if (!bytes) return Fail("cannot read " + path);
    v1::PushModelMetadata metadata;
    metadata.set_model_name("image224");
    metadata.set_version("1");
    metadata.set_format(v1::MODEL_FORMAT_ONNX);
    auto* input = metadata.add_inputs();
    input->set_name("image");
    for (int64_t d : {1, 3, 224, 224}) input->add_shape(d);
    auto* output = metadata.add_outputs();
    output->set_name("probs");
    for (int64_t d : {1, 10}) output->add_shape(d);
    if (auto s = server.PushModel(metadata, *bytes, &pushed); !s.ok())
      return Fail("push image224: " + s.error_message(), &server);
  }
  for (const char* model : {"vector4", "image224"}) {
    v1::Deployment deployment;
    if (auto s = server.CreateDeployment(model, "1", "", &deployment); !s.ok())
      return Fail(absl::StrCat("deploy ", model, ": ", s.error_message()), &server);
  }
  std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs(2);
  auto connect = [&]() -> bool {
    for (size_t i = 0; i < 2; ++i) {
      stubs[i] = agents[i]->NewInferenceStub();
      if (!edgefleet::test::WaitFor(
              [&] {
                return Serves(*stubs[i], {"vector4", "image224"});
              },
              120s, 100ms)) {
        Fail(agents[i]->device_id() + " never served both models", &server);
        return false;
      }
    }
    return true;
  };
  if (!connect()) return 1;
  std::cerr << "both agents serve vector4 and image224\n";

  std::vector<ModelCase> cases(2);
  cases[0].name = "vector4";
  cases[0].label = "vector, 4 features -> 3 classes";
  cases[0].request.set_model_name("vector4");
  *cases[0].request.add_inputs() = Tensor("input", {1, 4}, 4, 7);
  cases[0].requests_per_round = o.requests;
  cases[1].name = "image224";
  cases[1].label = "image, 3x224x224 -> 10 classes";
  cases[1].request.set_model_name("image224");
  *cases[1].request.add_inputs() = Tensor("image", {1, 3, 224, 224}, 3 * 224 * 224, 11);
  cases[1].requests_per_round = std::max(1, o.requests / 5);

  std::string text = absl::StrFormat(
      "bench/predict_telemetry: %d rounds per agent and model, alternating on/off, roles swapped "
      "halfway; local gRPC "
      "Predict over a Unix socket, one request at a time\n\n"
      "%-32s %9s %9s %9s %9s %9s %22s %22s %8s %16s\n",
      o.rounds, "model", "requests", "on p50", "off p50", "on p99", "off p99",
      "p50 diff us (95% CI)", "mean diff us (95% CI)", "A/A us", "of RTT (95% CI)");
  // Per model: every request's time with telemetry on and off, and per round the difference
  // (on - off) of the medians and of the means, by half (agent 0 on, then agent 1 on).
  struct Samples {
    std::vector<double> on, off;
    std::vector<double> median_diff[2], mean_diff[2];
  };
  std::vector<Samples> samples(cases.size());
  const int rounds_per_half = o.rounds / 2;
  for (int half = 0; half < 2; ++half) {
    const size_t on = half == 0 ? 0 : 1;
    if (half == 1) {
      for (auto& a : agents) a->Stop();
      start_agent(0, false);
      start_agent(1, true);
      if (!connect()) return 1;
      std::cerr << "roles swapped: agent-1 records telemetry\n";
    }
    for (size_t m = 0; m < cases.size(); ++m) {
      const ModelCase& c = cases[m];
      std::string error;
      std::vector<double> warm;
      for (auto& stub : stubs) {
        if (!RunRound(*stub, c.request, c.requests_per_round, &warm, &error))
          return Fail(c.name + " warm-up: " + error, &server);
      }
      for (int r = 0; r < rounds_per_half; ++r) {
        double median[2] = {0, 0}, mean[2] = {0, 0};  // [0] on, [1] off
        // on-off, off-on, on-off, ...: each agent goes first in half of the rounds.
        for (int k = 0; k < 2; ++k) {
          const int role = (r % 2 == 0) ? k : 1 - k;
          const size_t agent = role == 0 ? on : 1 - on;
          std::vector<double> us;
          if (!RunRound(*stubs[agent], c.request, c.requests_per_round, &us, &error))
            return Fail(c.name + ": " + error, &server);
          median[role] = Quantile(us, 0.5);
          for (double x : us) mean[role] += x;
          mean[role] /= static_cast<double>(us.size());
          auto& all = role == 0 ? samples[m].on : samples[m].off;
          all.insert(all.end(), us.begin(), us.end());
        }
        samples[m].median_diff[half].push_back(median[0] - median[1]);
        samples[m].mean_diff[half].push_back(mean[0] - mean[1]);
      }
    }
  }

  std::string json_models;
  for (size_t m = 0; m < cases.size(); ++m) {
    const ModelCase& c = cases[m];
    const Samples& sm = samples[m];
    auto both = [](const std::vector<double>(&halves)[2]) {
      std::vector<double> v = halves[0];
      v.insert(v.end(), halves[1].begin(), halves[1].end());
      return v;
    };
    const MeanCi d50 = MeanWithCi(both(sm.median_diff));
    const MeanCi dmean = MeanWithCi(both(sm.mean_diff));
    // Agent 0 minus agent 1 with telemetry's cost out of it: half of (first half's on - off)
    // minus (second half's on - off).
    const double aa = (MeanWithCi(sm.median_diff[0]).mean - MeanWithCi(sm.median_diff[1]).mean) / 2;
    const double off_p50 = Quantile(sm.off, 0.5);
    const double ratio = off_p50 > 0 ? d50.mean / off_p50 : 0;
    const double ratio_ci = off_p50 > 0 ? d50.half_width / off_p50 : 0;
    absl::StrAppendFormat(&text, "%-32s %9d %9.1f %9.1f %9.1f %9.1f %22s %22s %8s %16s\n", c.label,
                          static_cast<int>(sm.on.size()), Quantile(sm.on, 0.5), off_p50,
                          Quantile(sm.on, 0.99), Quantile(sm.off, 0.99),
                          absl::StrFormat("%+.2f +- %.2f", d50.mean, d50.half_width),
                          absl::StrFormat("%+.2f +- %.2f", dmean.mean, dmean.half_width),
                          absl::StrFormat("%+.1f", aa),
                          absl::StrFormat("%+.2f%% +- %.2f", 100 * ratio, 100 * ratio_ci));
    absl::StrAppendFormat(
        &json_models,
        R"(%s"%s": {"requests_per_role": %d, "on_p50_us": %.2f, "off_p50_us": %.2f, "on_p99_us": %.2f, "off_p99_us": %.2f, "p50_diff_us": %.3f, "p50_diff_ci95_us": %.3f, "mean_diff_us": %.3f, "mean_diff_ci95_us": %.3f, "agent_aa_diff_us": %.3f, "p50_diff_ratio": %.5f, "p50_diff_ratio_ci95": %.5f})",
        json_models.empty() ? "" : ", ", c.name, static_cast<int>(sm.on.size()),
        Quantile(sm.on, 0.5), off_p50, Quantile(sm.on, 0.99), Quantile(sm.off, 0.99), d50.mean,
        d50.half_width, dmean.mean, dmean.half_width, aa, ratio, ratio_ci);
  }
  absl::StrAppend(&text,
                  "\non/off: the agent with telemetry and the one with --disable-telemetry true; "
                  "times in microseconds; diff = on - off,\nthe mean over rounds of the "
                  "per-round difference, +- its 95% confidence half-width; A/A = agent 0 minus "
                  "agent 1 apart from telemetry\n(cancelled in the diff by the swap); of RTT = p50 "
                  "diff / off p50.\n");
  std::cout << text;
  const std::string json =
      absl::StrFormat(R"({"bench": "predict_telemetry", "rounds": %d, %s})", o.rounds, json_models);
  if (!o.json.empty()) std::ofstream(o.json) << json << "\n";
  std::cout << json << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const int parsed = edgefleet::bench::ParseFlags(
      argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
        bool ok = true;
        if (flag == "--rounds") {
          ok = absl::SimpleAtoi(value, &o.rounds) && o.rounds >= 4 && o.rounds % 2 == 0;
        } else if (flag == "--requests") {
          ok = absl::SimpleAtoi(value, &o.requests) && o.requests >= 1;
        } else if (flag == "--bin-dir") {
          o.bin_dir = value;
        } else if (flag == "--models") {
          o.models = value;
        } else if (flag == "--image-model") {
          o.image_model = value;
        } else if (flag == "--json") {
          o.json = value;
        } else {
          ok = false;
        }
        return ok;
      });
  if (parsed >= 0) return parsed;
  try {
    return Run(o);
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
}
