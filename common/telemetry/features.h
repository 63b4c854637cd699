// What telemetry watches of a request: its features (from the first input tensor) and its output
// values (from the first output tensor). One copy, used by the agent on every request and by
// `edgefleetctl model push --reference` on the reference sample, so both see the same numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace edgefleet::telemetry {

// Features of a row-major float tensor: the elements of a vector input ([F] or [N, F], each row
// a sample) or the per-image mean of each channel of an NCHW image input — an image's pixels are
// not features, its channels' levels are (and cost one pass, not one histogram insert per pixel;
// large planes are sampled on a stride). Other shapes have no features.
// Fills `features` row by row (samples x features) and returns the feature count (0: none).
size_t ExtractFeatures(std::span<const int64_t> shape, std::span<const float> data,
                       std::vector<double>& features);

// The output value of each sample of a row-major output tensor: the index of the largest score
// when there are several (a classifier's class), else the score itself.
void ExtractOutputs(std::span<const int64_t> shape, std::span<const float> data,
                    std::vector<double>& values);

}  // namespace edgefleet::telemetry
