#include "common/telemetry/feature_histogram.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace edgefleet::telemetry {

bool FeatureHistogram::ValidEdges(std::span<const double> edges) {
  if (edges.size() > kMaxEdges) return false;
  for (size_t i = 0; i < edges.size(); ++i) {
    if (!std::isfinite(edges[i])) return false;
    if (i > 0 && !(edges[i - 1] < edges[i])) return false;
  }
  return true;
}

FeatureHistogram::FeatureHistogram(std::vector<double> edges)
    : edges_(std::move(edges)), bins_(edges_.size() + 1, 0) {}

void FeatureHistogram::Add(double value) {
  if (!std::isfinite(value)) {
    // NaN and +-inf alike: not a measurement a bin or the sum can hold.
    ++nan_count_;
    return;
  }
  const auto bin = std::upper_bound(edges_.begin(), edges_.end(), value) - edges_.begin();
  ++bins_[static_cast<size_t>(bin)];
  ++count_;
  sum_ += value;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

bool FeatureHistogram::Merge(const FeatureHistogram& other) {
  if (other.edges_ != edges_) return false;
  for (size_t i = 0; i < bins_.size(); ++i) bins_[i] += other.bins_[i];
  count_ += other.count_;
  nan_count_ += other.nan_count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  return true;
}

std::optional<double> FeatureHistogram::min() const {
  if (count_ == 0) return std::nullopt;
  return min_;
}

std::optional<double> FeatureHistogram::max() const {
  if (count_ == 0) return std::nullopt;
  return max_;
}

bool FeatureHistogram::ConsistentParts(const std::vector<uint64_t>& bins, double min, double max,
                                       double sum) {
  if (bins.empty() || bins.size() > kMaxEdges + 1) return false;
  uint64_t count = 0;
  for (uint64_t b : bins) {
    if (count + b < count) return false;  // overflow: no real window holds this
    count += b;
  }
  return count == 0 ||
         (std::isfinite(min) && std::isfinite(max) && min <= max && std::isfinite(sum));
}

std::optional<FeatureHistogram> FeatureHistogram::FromParts(std::vector<double> edges,
                                                            std::vector<uint64_t> bins,
                                                            uint64_t nan_count, double min,
                                                            double max, double sum) {
  if (!ValidEdges(edges) || bins.size() != edges.size() + 1) return std::nullopt;
  if (!ConsistentParts(bins, min, max, sum)) return std::nullopt;
  FeatureHistogram h(std::move(edges));
  h.count_ = std::accumulate(bins.begin(), bins.end(), uint64_t{0});
  h.bins_ = std::move(bins);
  h.nan_count_ = nan_count;
  if (h.count_ > 0) {
    h.min_ = min;
    h.max_ = max;
    h.sum_ = sum;
  }
  return h;
}

std::vector<double> DecileEdges(std::span<const double> sample) {
  std::vector<double> finite;
  finite.reserve(sample.size());
  for (double v : sample) {
    if (std::isfinite(v)) finite.push_back(v);
  }
  if (finite.empty()) return {};
  std::sort(finite.begin(), finite.end());
  std::vector<double> edges;
  for (int d = 1; d <= 9; ++d) {
    // The sample value at rank n*d/10: with half-open bins [e, next) exactly a tenth of a
    // sample of distinct values falls below each edge, and edges stay values of the sample.
    const size_t rank = finite.size() * static_cast<size_t>(d) / 10;
    const double edge = finite[std::min(rank, finite.size() - 1)];
    if (edges.empty() || edges.back() < edge) edges.push_back(edge);
  }
  return edges;
}

}  // namespace edgefleet::telemetry
