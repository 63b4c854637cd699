// An inference engine for tests of the inference threads: it records the threads it runs on
// and, when blocked, holds every run until Release().
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "agent/engine/inference_engine.h"

namespace edgefleet::agent::testing {

class BlockingEngine final : public InferenceEngine {
 public:
  explicit BlockingEngine(bool blocked) : blocked_(blocked) {}

  absl::StatusOr<std::vector<TensorData>> Run(const std::vector<TensorData>& inputs,
                                              const std::vector<std::string>&) override {
    std::unique_lock lock(mu_);
    ++entered_;
    threads_.insert(std::this_thread::get_id());
    changed_.notify_all();
    changed_.wait(lock, [this] { return !blocked_; });
    ++runs_;
    return inputs;
  }
  std::vector<std::string> OutputNames() const override { return {"x"}; }
  std::string RuntimeName() const override { return "blocking-test-engine"; }

  void WaitUntilEntered(int count) {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return entered_ >= count; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    blocked_ = false;
    changed_.notify_all();
  }
  int runs() const {
    std::lock_guard lock(mu_);
    return runs_;
  }
  std::set<std::thread::id> threads() const {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool blocked_;
  int entered_ = 0;
  int runs_ = 0;
  std::set<std::thread::id> threads_;
};

}  // namespace edgefleet::agent::testing
