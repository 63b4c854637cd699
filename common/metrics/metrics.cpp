#include "common/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace edgefleet::metrics {

void Counter::Increment(double v) {
  if (!(v >= 0)) return;
  value_.fetch_add(v, std::memory_order_relaxed);
}

double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double v) { value_.store(v, std::memory_order_relaxed); }
void Gauge::Increment(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
void Gauge::Decrement(double v) { value_.fetch_sub(v, std::memory_order_relaxed); }
double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(internal::NormalizeBuckets(std::move(upper_bounds))),
      counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::Observe(double v) {
  // le semantics: a value lands in the first bucket whose bound is >= v; NaN only in +Inf.
  size_t index = upper_bounds_.size();
  if (!std::isnan(v)) {
    index = static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                upper_bounds_.begin());
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[index];
  sum_ += v;
  ++count_;
}

void Histogram::ObserveMultiple(const std::vector<double>& bucket_increments,
                                double sum_of_values) {
  if (bucket_increments.size() != counts_.size()) return;
  for (double v : bucket_increments) {
    if (!(v >= 0)) return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < counts_.size(); ++i) {
    const auto n = static_cast<uint64_t>(bucket_increments[i]);
    counts_[i] += n;
    count_ += n;
  }
  sum_ += sum_of_values;
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot s;
  s.upper_bounds = upper_bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  s.cumulative_counts.reserve(counts_.size());
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative_counts.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Go's strconv.FormatFloat(v, 'g', -1, 64): shortest round-trip digits, exponent form when
  // the decimal exponent is < -4 or >= 6 ("1e+06", "0.0005").
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, sci.ptr);
  int exponent = std::atoi(s.c_str() + s.find('e') + 1);
  if (exponent < -4 || exponent >= 6) return s;
  auto fixed = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

namespace internal {
namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

bool IsValidLabelName(const std::string& name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  // Names starting with "__" are reserved for Prometheus' internal use.
  if (name.rfind("__", 0) == 0) return false;
  return std::all_of(name.begin(), name.end(), IsNameChar);
}

void AppendEscaped(std::string& out, const std::string& s, bool escape_quote) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += escape_quote ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

// Appends `{a="1",b="2"}` (or nothing for no labels), with an optional extra le label last.
void AppendLabels(std::string& out, const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    AppendEscaped(out, value, true);
    out += '"';
  }
  if (le != nullptr) {
    if (!first) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, const std::string& name, const Labels& labels, double value,
                  const std::string* le = nullptr) {
  out += name;
  AppendLabels(out, labels, le);
  out += ' ';
  out += FormatValue(value);
  out += '\n';
}

}  // namespace

void ValidateMetricName(const std::string& name) {
  bool ok = !name.empty() && (IsNameStart(name[0]) || name[0] == ':') &&
            std::all_of(name.begin(), name.end(), [](char c) { return IsNameChar(c) || c == ':'; });
  if (!ok) throw std::invalid_argument("invalid Prometheus metric name '" + name + "'");
}

void ValidateLabels(const Labels& labels, const std::string& reserved) {
  for (const auto& [name, value] : labels) {
    if (!IsValidLabelName(name)) {
      throw std::invalid_argument("invalid Prometheus label name '" + name + "'");
    }
    if (!reserved.empty() && name == reserved) {
      throw std::invalid_argument("label name '" + name + "' is reserved for this metric type");
    }
  }
}

std::vector<double> NormalizeBuckets(std::vector<double> buckets) {
  if (!buckets.empty() && std::isinf(buckets.back()) && buckets.back() > 0) buckets.pop_back();
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i])) {
      throw std::invalid_argument("histogram bucket bounds must be finite");
    }
    if (i > 0 && !(buckets[i - 1] < buckets[i])) {
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
    }
  }
  return buckets;
}

void AppendSamples(std::string& out, const std::string& name, const Labels& labels,
                   const Counter& c) {
  AppendSample(out, name, labels, c.Value());
}

void AppendSamples(std::string& out, const std::string& name, const Labels& labels,
                   const Gauge& g) {
  AppendSample(out, name, labels, g.Value());
}

void AppendSamples(std::string& out, const std::string& name, const Labels& labels,
                   const Histogram& h) {
  Histogram::Snapshot s = h.Collect();
  const std::string bucket_name = name + "_bucket";
  for (size_t i = 0; i < s.cumulative_counts.size(); ++i) {
    const std::string le =
        i < s.upper_bounds.size() ? FormatValue(s.upper_bounds[i]) : std::string("+Inf");
    AppendSample(out, bucket_name, labels, static_cast<double>(s.cumulative_counts[i]), &le);
  }
  AppendSample(out, name + "_sum", labels, s.sum);
  AppendSample(out, name + "_count", labels, static_cast<double>(s.count));
}

void FamilyBase::Serialize(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  AppendEscaped(out, help_, false);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_;
  out += '\n';
  AppendChildren(out);
}

}  // namespace internal

template <class T>
Family<T>& Registry::AddFamily(std::string name, std::string help, const std::string& type,
                               std::function<std::unique_ptr<T>()> make,
                               const std::string& reserved, const std::vector<double>* buckets) {
  internal::ValidateMetricName(name);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    auto* existing = dynamic_cast<Family<T>*>(it->second.get());
    bool same = existing != nullptr && existing->type() == type && existing->help() == help &&
                (buckets == nullptr || histogram_buckets_[name] == *buckets);
    if (!same) {
      throw std::invalid_argument("metric family '" + name +
                                  "' already registered with a different definition");
    }
    return *existing;
  }
  auto family = std::make_unique<Family<T>>(name, std::move(help), type, std::move(make), reserved);
  Family<T>& ref = *family;
  if (buckets != nullptr) histogram_buckets_[name] = *buckets;
  families_.emplace(std::move(name), std::move(family));
  return ref;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help) {
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0) {
    throw std::invalid_argument("counter name '" + name + "' must end in _total");
  }
  return AddFamily<Counter>(
      std::move(name), std::move(help), "counter", [] { return std::make_unique<Counter>(); }, "",
      nullptr);
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help) {
  return AddFamily<Gauge>(
      std::move(name), std::move(help), "gauge", [] { return std::make_unique<Gauge>(); }, "",
      nullptr);
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<double> buckets) {
  std::vector<double> bounds = internal::NormalizeBuckets(std::move(buckets));
  return AddFamily<Histogram>(
      std::move(name), std::move(help), "histogram",
      [bounds] { return std::make_unique<Histogram>(bounds); }, "le", &bounds);
}

void Registry::AddCollectHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string Registry::Serialize() {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hooks = hooks_;
  }
  for (const auto& hook : hooks) hook();

  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) family->Serialize(out);
  return out;
}

}  // namespace edgefleet::metrics
