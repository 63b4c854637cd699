// Entry points shared by the delta decoders' libFuzzer targets and the regression replay test:
// each runs Apply on hostile bytes against a fixed base file.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace edgefleet::delta::fuzz {

// Fixed base files: the seed patches are made against them, so a mutated patch still passes
// the container's base-file check and reaches the payload decoder.
const std::string& OldBlob();
const std::string& NewBlob();
// A small ONNX ModelProto (float32 and float16 initializers) and a fine-tuned successor, for the
// tensor codec.
const std::string& OldModel();
const std::string& NewModel();
// Successors that exercise the tensor codec's other paths: magnitude pruning (the prune
// prediction), int8 fake quantization (the grid prediction), and a few changed weights (sparse
// byte planes).
const std::string& PrunedModel();
const std::string& QuantizedModel();
const std::string& SparselyChangedModel();
// A rank-one update of the 32 x 32 matrices w1 (float32) and w3 (float16), as merging an adapter
// makes (the low-rank prediction and its factors).
const std::string& LowRankModel();

// Apply(OldBlob(), patch): the bsdiff40 decoder and the EFDELTA1 container with match-zstd.
absl::Status RunBsdiff40(std::string_view patch);
absl::Status RunContainer(std::string_view patch);
// Apply(OldModel(), patch): the container with the tensor codec.
absl::Status RunTensor(std::string_view patch);

}  // namespace edgefleet::delta::fuzz
