// Minimal ONNX model files written byte by byte (protobuf wire format), for tests that need the
// server to accept a pushed file as ONNX but care about its bytes, not about running it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgefleet::test {

struct OnnxTensorDecl {
  std::string name;
  std::vector<int64_t> dims;  // -1 writes a symbolic dimension ("n")
};

// A ModelProto (IR 7) whose graph has one FLOAT initializer "w" holding `weights` as raw_data,
// and the given float inputs and outputs. It has no nodes: it parses, it does not run.
std::string OnnxModelWith(std::string_view weights,
                          const std::vector<OnnxTensorDecl>& inputs = {{"input", {1, 4}}},
                          const std::vector<OnnxTensorDecl>& outputs = {{"probs", {1, 3}}});

// The same file as prefix + (weights_size bytes of weights) + suffix, for files too large to
// build in memory: write the prefix, stream the weights, write the suffix.
struct OnnxFrame {
  std::string prefix;
  std::string suffix;
};
OnnxFrame OnnxFrameFor(uint64_t weights_size,
                       const std::vector<OnnxTensorDecl>& inputs = {{"input", {1, 4}}},
                       const std::vector<OnnxTensorDecl>& outputs = {{"probs", {1, 3}}});

}  // namespace edgefleet::test
