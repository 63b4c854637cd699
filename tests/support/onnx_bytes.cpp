#include "tests/support/onnx_bytes.h"

namespace edgefleet::test {
namespace {

void Varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void VarintField(std::string& out, uint32_t field, uint64_t v) {
  Varint(out, uint64_t{field} << 3);
  Varint(out, v);
}

void BytesField(std::string& out, uint32_t field, std::string_view bytes) {
  Varint(out, (uint64_t{field} << 3) | 2);
  Varint(out, bytes.size());
  out.append(bytes);
}

// ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape}}}.
std::string ValueInfo(const OnnxTensorDecl& tensor) {
  std::string shape;
  for (int64_t d : tensor.dims) {
    std::string dim;
    if (d < 0) {
      BytesField(dim, 2, "n");  // dim_param
    } else {
      VarintField(dim, 1, static_cast<uint64_t>(d));  // dim_value
    }
    BytesField(shape, 1, dim);
  }
  std::string tensor_type;
  VarintField(tensor_type, 1, 1);  // elem_type FLOAT
  BytesField(tensor_type, 2, shape);
  std::string type;
  BytesField(type, 1, tensor_type);
  std::string info;
  BytesField(info, 1, tensor.name);
  BytesField(info, 2, type);
  return info;
}

}  // namespace

OnnxFrame OnnxFrameFor(uint64_t weights_size, const std::vector<OnnxTensorDecl>& inputs,
                       const std::vector<OnnxTensorDecl>& outputs) {
  // The initializer's raw_data is the last field before the graph's inputs and outputs.
  std::string initializer_head;
  VarintField(initializer_head, 1, weights_size / 4);  // dims
  VarintField(initializer_head, 2, 1);                 // data_type FLOAT
  BytesField(initializer_head, 8, "w");                // name
  Varint(initializer_head, (uint64_t{9} << 3) | 2);    // raw_data
  Varint(initializer_head, weights_size);
  std::string graph_head;
  BytesField(graph_head, 2, "test_graph");     // name
  Varint(graph_head, (uint64_t{5} << 3) | 2);  // initializer
  Varint(graph_head, initializer_head.size() + weights_size);
  graph_head += initializer_head;
  std::string graph_tail;
  for (const auto& input : inputs) BytesField(graph_tail, 11, ValueInfo(input));
  for (const auto& output : outputs) BytesField(graph_tail, 12, ValueInfo(output));
  OnnxFrame frame;
  VarintField(frame.prefix, 1, 7);               // ir_version
  Varint(frame.prefix, (uint64_t{7} << 3) | 2);  // graph
  Varint(frame.prefix, graph_head.size() + weights_size + graph_tail.size());
  frame.prefix += graph_head;
  frame.suffix = std::move(graph_tail);
  return frame;
}

std::string OnnxModelWith(std::string_view weights, const std::vector<OnnxTensorDecl>& inputs,
                          const std::vector<OnnxTensorDecl>& outputs) {
  OnnxFrame frame = OnnxFrameFor(weights.size(), inputs, outputs);
  return frame.prefix + std::string(weights) + frame.suffix;
}

}  // namespace edgefleet::test
