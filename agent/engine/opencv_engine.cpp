// OpenCV DNN adapter: the only file in the agent that sees cv:: types.
#include "agent/engine/opencv_engine.h"

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "opencv2/core.hpp"
#include "opencv2/dnn.hpp"

namespace edgefleet::agent {
namespace {

// cv::Mat supports at most 32 dimensions (CV_MAX_DIM).
constexpr size_t kMaxDims = 32;

// cv::Exception::what() is a multi-line banner; err is the message itself.
std::string CvMessage(const cv::Exception& e) {
  return absl::StrCat(e.err, " (in ", e.func.empty() ? "opencv" : e.func, ")");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Checks one input tensor and returns its shape as OpenCV's int sizes.
absl::StatusOr<std::vector<int>> ValidateInput(const TensorData& t) {
  if (t.name.empty()) return absl::InvalidArgumentError("input tensor has no name");
  if (t.shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("input '", t.name, "' has an empty shape"));
  }
  if (t.shape.size() > kMaxDims) {
    return absl::InvalidArgumentError(absl::StrCat("input '", t.name, "' has ", t.shape.size(),
                                                   " dimensions, at most ", kMaxDims,
                                                   " supported"));
  }
  std::vector<int> sizes;
  sizes.reserve(t.shape.size());
  // Saturating product: absurd shapes must not wrap around to a plausible element count.
  uint64_t elements = 1;
  for (int64_t dim : t.shape) {
    if (dim <= 0 || dim > INT_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", t.name, "' shape ", ShapeString(t.shape), " has a dimension out of range"));
    }
    const auto d = static_cast<uint64_t>(dim);
    elements = elements > UINT64_MAX / d ? UINT64_MAX : elements * d;
    sizes.push_back(static_cast<int>(dim));
  }
  if (elements != t.data.size()) {
    return absl::InvalidArgumentError(absl::StrCat("input '", t.name, "' shape ",
                                                   ShapeString(t.shape), " needs ", elements,
                                                   " values, got ", t.data.size()));
  }
  return sizes;
}

TensorData ToTensor(const std::string& name, const cv::Mat& mat) {
  TensorData t;
  t.name = name;
  for (int i = 0; i < mat.dims; ++i) t.shape.push_back(mat.size[i]);
  cv::Mat f32;
  if (mat.type() == CV_32F && mat.isContinuous()) {
    f32 = mat;
  } else {
    mat.convertTo(f32, CV_32F);
    if (!f32.isContinuous()) f32 = f32.clone();
  }
  const float* begin = f32.ptr<float>();
  t.data.assign(begin, begin + f32.total());
  return t;
}

class OpenCvEngine final : public InferenceEngine {
 public:
  OpenCvEngine(std::string path, cv::dnn::Net net)
      : path_(std::move(path)),
        net_(std::move(net)),
        output_names_(net_.getUnconnectedOutLayersNames()) {}

  absl::StatusOr<std::vector<TensorData>> Run(
      const std::vector<TensorData>& inputs,
      const std::vector<std::string>& output_names) override {
    if (inputs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("run model ", path_, ": no inputs"));
    }
    std::vector<cv::Mat> blobs;
    blobs.reserve(inputs.size());
    std::set<std::string> seen;
    for (const TensorData& t : inputs) {
      absl::StatusOr<std::vector<int>> sizes = ValidateInput(t);
      if (!sizes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("run model ", path_, ": ", sizes.status().message()));
      }
      if (!seen.insert(t.name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("run model ", path_, ": input '", t.name, "' given twice"));
      }
      cv::Mat blob(static_cast<int>(sizes->size()), sizes->data(), CV_32F);
      std::memcpy(blob.ptr<float>(), t.data.data(), t.data.size() * sizeof(float));
      blobs.push_back(std::move(blob));
    }
    const std::vector<std::string>& wanted = output_names.empty() ? output_names_ : output_names;
    std::vector<TensorData> result;
    // cv::dnn::Net keeps per-run state (inputs, intermediate blobs): one run at a time.
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& name : wanted) {
      // OpenCV's own error for this is "Layer with requested id=-1 not found". Names of the
      // form "layer.N" (N-th output of a layer) are left for OpenCV to resolve.
      if (name.find('.') == std::string::npos && net_.getLayerId(name) < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("run model ", path_, ": unknown output '", name,
                         "' (model outputs: ", absl::StrJoin(output_names_, ","), ")"));
      }
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      try {
        net_.setInput(blobs[i], inputs[i].name);
      } catch (const cv::Exception& e) {
        return absl::InvalidArgumentError(absl::StrCat(
            "run model ", path_, ": input '", inputs[i].name, "' rejected: ", CvMessage(e)));
      }
    }
    std::vector<cv::Mat> outs;
    try {
      net_.forward(outs, std::vector<cv::String>(wanted.begin(), wanted.end()));
    } catch (const cv::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("run model ", path_, ": forward outputs [",
                                                     absl::StrJoin(wanted, ","),
                                                     "] failed: ", CvMessage(e)));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("run model ", path_, ": forward failed: ", e.what()));
    }
    if (outs.size() != wanted.size()) {
      return absl::InternalError(absl::StrCat("run model ", path_, ": asked for ", wanted.size(),
                                              " outputs, got ", outs.size()));
    }
    result.reserve(outs.size());
    // Copy while holding the lock: the Mats may alias the net's internal buffers.
    for (size_t i = 0; i < outs.size(); ++i) result.push_back(ToTensor(wanted[i], outs[i]));
    return result;
  }

  std::vector<std::string> OutputNames() const override { return output_names_; }

  std::string RuntimeName() const override {
    return absl::StrCat("opencv-dnn ", cv::getVersionString());
  }

 private:
  const std::string path_;
  std::mutex mu_;
  cv::dnn::Net net_;
  const std::vector<std::string> output_names_;
};

class OpenCvEngineFactory final : public EngineFactory {
 public:
  absl::StatusOr<std::unique_ptr<InferenceEngine>> Load(const std::string& model_path) override {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(model_path, ec)) {
      return absl::NotFoundError(absl::StrCat("load model ", model_path, ": no such file"));
    }
    try {
      cv::dnn::Net net = cv::dnn::readNetFromONNX(model_path);
      if (net.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("load model ", model_path, ": OpenCV produced an empty network"));
      }
      auto engine = std::make_unique<OpenCvEngine>(model_path, std::move(net));
      if (engine->OutputNames().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("load model ", model_path, ": model has no outputs"));
      }
      return engine;
    } catch (const cv::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("load model ", model_path, ": ", CvMessage(e)));
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("load model ", model_path, ": ", e.what()));
    }
  }
};

// OpenCV runs a model's layers on worker threads (TBB here) that it starts the first time a
// model runs, and a thread inherits the CPU priority of the thread that starts it. On a device
// that starts with nothing to serve, the first model to run is a warm-up on the agent's
// lowered-priority update thread, and the workers every later Predict uses would inherit its
// priority. Starting them here, from whoever makes the factory, avoids that: every stripe waits
// (briefly, bounded) until all have started, so they run on as many threads as OpenCV has.
// The stripes' shared state is on the heap and each stripe holds a reference of its own: how TBB
// hands a finished stripe back is invisible to ThreadSanitizer, which took this frame's stack,
// reused after the return, for memory a worker still read (a TSan run reported it as a race).
// The references' atomic counts are what it can see order the workers' last reads before the
// free.
void StartRuntimeThreads() {
  const int threads = cv::getNumThreads();
  if (threads <= 1) return;
  struct Rendezvous {
    std::mutex mu;
    std::condition_variable all_started;
    int started = 0;
  };
  auto rendezvous = std::make_shared<Rendezvous>();
  cv::parallel_for_(
      cv::Range(0, threads),
      [rendezvous, threads](const cv::Range& range) {
        const std::shared_ptr<Rendezvous> held = rendezvous;
        Rendezvous& r = *held;
        std::unique_lock lock(r.mu);
        r.started += range.end - range.start;
        r.all_started.notify_all();
        r.all_started.wait_for(lock, std::chrono::milliseconds(200),
                               [&] { return r.started >= threads; });
      },
      threads);
}

}  // namespace

std::unique_ptr<EngineFactory> MakeOpenCvEngineFactory() {
  static std::once_flag started;
  std::call_once(started, StartRuntimeThreads);
  return std::make_unique<OpenCvEngineFactory>();
}

}  // namespace edgefleet::agent
