// A fixed-bin histogram of one input feature (or of a model's outputs) with its count, NaN
// count, min, max and sum: what the agent keeps per feature and window instead of the inputs.
// Bin edges come from the version's reference profile, so every device of a version bins alike
// and the server merges windows by adding bins.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

namespace edgefleet::telemetry {

// `edges` e0 < e1 < ... < e(k-1) make k + 1 bins: (-inf, e0), [e0, e1), ..., [e(k-1), +inf).
class FeatureHistogram {
 public:
  // Edges must be finite and strictly increasing (see ValidEdges); at most kMaxEdges.
  static constexpr size_t kMaxEdges = 255;
  static bool ValidEdges(std::span<const double> edges);

  explicit FeatureHistogram(std::vector<double> edges);

  void Add(double value);
  // Adds `other`'s counts; false (and nothing changes) when its edges differ.
  bool Merge(const FeatureHistogram& other);

  const std::vector<double>& edges() const { return edges_; }
  const std::vector<uint64_t>& bins() const { return bins_; }
  uint64_t count() const { return count_; }  // finite values, the ones binned
  uint64_t nan_count() const { return nan_count_; }
  double sum() const { return sum_; }
  // Over the finite values; nullopt when there were none.
  std::optional<double> min() const;
  std::optional<double> max() const;

  // Whether bins and statistics could come from one histogram, whatever its edges: at most
  // kMaxEdges + 1 bins whose sum does not overflow, and when they hold values, a finite
  // min <= max and a finite sum.
  static bool ConsistentParts(const std::vector<uint64_t>& bins, double min, double max,
                              double sum);

  // Rebuilds a histogram from its parts (what the proto carries); nullopt when they disagree:
  // invalid edges, bins.size() != edges.size() + 1, or a count that is not the bins' sum.
  static std::optional<FeatureHistogram> FromParts(std::vector<double> edges,
                                                   std::vector<uint64_t> bins, uint64_t nan_count,
                                                   double min, double max, double sum);

 private:
  std::vector<double> edges_;
  std::vector<uint64_t> bins_;
  uint64_t count_ = 0;
  uint64_t nan_count_ = 0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = -std::numeric_limits<double>::infinity();
  double sum_ = 0;
};

// Bin edges for a feature from a reference sample: its deciles (9 edges), duplicates dropped so
// that a feature with few distinct values still gets valid edges; empty when the sample has no
// finite value.
std::vector<double> DecileEdges(std::span<const double> sample);

}  // namespace edgefleet::telemetry
