// A fixed set of long-lived threads that run the agent's inferences. The runtime keeps state per
// thread that runs a model (OpenCV DNN: per-thread buffers of its parallel loops, never freed);
// running every inference on these threads bounds that state by the pool size, however many
// threads the local API starts and retires. A bounded queue turns overload into a refusal the
// caller can see instead of unbounded waiting.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace edgefleet::agent {

struct InferencePoolOptions {
  // Threads that run inferences; at least 1.
  int threads = 2;
  // Requests that may wait for a free thread; one more is refused with ResourceExhausted.
  int queue_limit = 64;
};

class InferencePool {
 public:
  explicit InferencePool(InferencePoolOptions options = {});
  // Lets queued work finish, then joins the threads.
  ~InferencePool();
  InferencePool(const InferencePool&) = delete;
  InferencePool& operator=(const InferencePool&) = delete;

  // Runs `task` on one of the pool's threads and returns when it has run. ResourceExhausted
  // (and `task` does not run) when queue_limit requests already wait for a thread.
  absl::Status Run(absl::FunctionRef<void()> task);

  int threads() const { return static_cast<int>(threads_.size()); }
  // Requests waiting for a thread right now.
  size_t waiting() const;

 private:
  // Lives on the caller's stack while it waits.
  struct Job {
    explicit Job(absl::FunctionRef<void()> t) : task(t) {}
    absl::FunctionRef<void()> task;
    bool done = false;
    std::condition_variable finished;
  };
  void Work();

  const size_t queue_limit_;
  mutable std::mutex mu_;
  std::condition_variable ready_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace edgefleet::agent
