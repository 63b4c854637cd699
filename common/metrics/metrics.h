// In-house Prometheus client (prometheus-cpp is not packaged for Debian 12): a registry of
// counter, gauge and histogram families with labels, serialized in the text exposition format.
//
// The interface follows prometheus-cpp (Registry, Family<T>::Add, Counter::Increment, ...) so the
// module can be swapped for it later. All metric types and families are safe to use from many
// threads. Naming mistakes are programmer errors and throw std::invalid_argument at Add* time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgefleet::metrics {

using Labels = std::map<std::string, std::string>;

// A monotonically increasing value. Its family name must end in "_total".
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Negative and NaN increments are ignored: a counter never goes down.
  void Increment(double v = 1);
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

// A value that can go up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v);
  void Increment(double v = 1);
  void Decrement(double v = 1);
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

// Distribution of observations in cumulative buckets, plus their sum and count.
class Histogram {
 public:
  // `upper_bounds` must be strictly increasing; a trailing +Inf is implied (and dropped if given).
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);
  // Adds many observations at once, as prometheus-cpp's ObserveMultiple: bucket_increments[i]
  // to bucket i (per bucket, not cumulative: one entry per bound, then +Inf) and sum_of_values to
  // the sum. A vector of the wrong size or with a negative or NaN entry changes nothing.
  void ObserveMultiple(const std::vector<double>& bucket_increments, double sum_of_values);

  struct Snapshot {
    std::vector<double> upper_bounds;         // without +Inf
    std::vector<uint64_t> cumulative_counts;  // upper_bounds.size() + 1 entries; last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  // A consistent view: the +Inf bucket always equals count.
  Snapshot Collect() const;

 private:
  const std::vector<double> upper_bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

namespace internal {

// Throws std::invalid_argument unless `name` is a valid Prometheus metric name.
void ValidateMetricName(const std::string& name);
// Throws std::invalid_argument unless every label name is valid and none is `reserved`.
void ValidateLabels(const Labels& labels, const std::string& reserved);
// Validates and normalizes histogram bucket bounds (sorted, finite, trailing +Inf removed).
std::vector<double> NormalizeBuckets(std::vector<double> buckets);

void AppendSamples(std::string& out, const std::string& name, const Labels& labels,
                   const Counter& c);
void AppendSamples(std::string& out, const std::string& name, const Labels& labels, const Gauge& g);
void AppendSamples(std::string& out, const std::string& name, const Labels& labels,
                   const Histogram& h);

// Type-erased part of a family, so the registry can hold families of any metric type.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::string type)
      : name_(std::move(name)), help_(std::move(help)), type_(std::move(type)) {}
  virtual ~FamilyBase() = default;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::string& type() const { return type_; }

  // Appends HELP, TYPE and every child's samples.
  void Serialize(std::string& out) const;

 protected:
  virtual void AppendChildren(std::string& out) const = 0;

 private:
  const std::string name_;
  const std::string help_;
  const std::string type_;
};

}  // namespace internal

// All children of one metric, keyed by their label set.
template <class T>
class Family : public internal::FamilyBase {
 public:
  Family(std::string name, std::string help, std::string type,
         std::function<std::unique_ptr<T>()> make, std::string reserved_label = "")
      : FamilyBase(std::move(name), std::move(help), std::move(type)),
        make_(std::move(make)),
        reserved_label_(std::move(reserved_label)) {}

  // Returns the child for `labels`, creating it on first use. The reference stays valid for the
  // life of the registry. Invalid label names throw std::invalid_argument.
  T& Add(const Labels& labels) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = children_.find(labels);
    if (it != children_.end()) return *it->second;
    internal::ValidateLabels(labels, reserved_label_);
    auto [inserted, ok] = children_.emplace(labels, make_());
    (void)ok;
    return *inserted->second;
  }

  // Drops the child for `labels` (a series that no longer exists, e.g. a model version that
  // stopped reporting); references to it must no longer be used.
  void Remove(const Labels& labels) {
    std::lock_guard<std::mutex> lock(mu_);
    children_.erase(labels);
  }

  // Whether a child with exactly these labels exists.
  bool Has(const Labels& labels) const {
    std::lock_guard<std::mutex> lock(mu_);
    return children_.count(labels) > 0;
  }

 protected:
  void AppendChildren(std::string& out) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [labels, child] : children_) {
      internal::AppendSamples(out, name(), labels, *child);
    }
  }

 private:
  const std::function<std::unique_ptr<T>()> make_;
  const std::string reserved_label_;
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> children_;
};

// Owns metric families and renders them for a /metrics endpoint.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Adding a name twice returns the existing family when type, help (and buckets) match, and
  // throws std::invalid_argument otherwise. Counter names must end in "_total".
  Family<Counter>& AddCounter(std::string name, std::string help);
  Family<Gauge>& AddGauge(std::string name, std::string help);
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<double> buckets);

  // Runs before each Serialize, outside the registry lock (a hook may add families or children),
  // e.g. to refresh gauges from a database.
  void AddCollectHook(std::function<void()> hook);

  // Prometheus text exposition format 0.0.4, families sorted by name.
  std::string Serialize();

 private:
  template <class T>
  Family<T>& AddFamily(std::string name, std::string help, const std::string& type,
                       std::function<std::unique_ptr<T>()> make, const std::string& reserved,
                       const std::vector<double>* buckets);

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<internal::FamilyBase>> families_;
  std::map<std::string, std::vector<double>> histogram_buckets_;
  std::vector<std::function<void()>> hooks_;
};

// Buckets for request/inference latencies in seconds: 0.0005 .. 10.
std::vector<double> DefaultLatencyBuckets();

// Formats a sample value or bucket bound the way the Prometheus Go client does
// ("+Inf", "0.005", "1e+06").
std::string FormatValue(double v);

}  // namespace edgefleet::metrics
