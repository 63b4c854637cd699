#include "agent/serving/inference_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {

InferencePool::InferencePool(InferencePoolOptions options)
    : queue_limit_(static_cast<size_t>(std::max(0, options.queue_limit))) {
  const int count = std::max(1, options.threads);
  threads_.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) threads_.emplace_back([this] { Work(); });
}

InferencePool::~InferencePool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

absl::Status InferencePool::Run(absl::FunctionRef<void()> task) {
  Job job(task);
  std::unique_lock lock(mu_);
  if (stopping_) return absl::UnavailableError("inference threads are shutting down");
  if (queue_.size() >= queue_limit_) {
    return absl::ResourceExhaustedError(absl::StrCat("inference queue is full: ", queue_.size(),
                                                     " requests wait for ", threads_.size(),
                                                     " inference threads; retry later"));
  }
  queue_.push_back(&job);
  ready_.notify_one();
  job.finished.wait(lock, [&job] { return job.done; });
  return absl::OkStatus();
}

size_t InferencePool::waiting() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void InferencePool::Work() {
  std::unique_lock lock(mu_);
  while (true) {
    ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    // Queued work still runs when stopping: its callers are waiting for it.
    if (queue_.empty()) return;
    Job* job = queue_.front();
    queue_.pop_front();
    lock.unlock();
    job->task();
    lock.lock();
    job->done = true;
    // Notified under the lock: the caller can only see `done` and destroy the job after we
    // release it.
    job->finished.notify_one();
  }
}

}  // namespace edgefleet::agent
