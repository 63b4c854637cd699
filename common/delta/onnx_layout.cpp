#include "common/delta/internal/onnx_layout.h"

#include <map>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/delta/onnx_signature.h"

namespace edgefleet::delta::internal {
namespace {

// Protobuf wire types; groups (3, 4) are deprecated and never appear in ONNX, so they are errors.
constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kFixed32 = 5;

// ModelProto / GraphProto / TensorProto field numbers from onnx.proto.
constexpr uint64_t kModelIrVersion = 1;
constexpr uint64_t kModelGraph = 7;
constexpr uint64_t kGraphInitializer = 5;
constexpr uint64_t kGraphInput = 11;
constexpr uint64_t kGraphOutput = 12;
// ValueInfoProto -> TypeProto -> TypeProto.Tensor -> TensorShapeProto -> Dimension.
constexpr uint64_t kValueInfoName = 1;
constexpr uint64_t kValueInfoType = 2;
constexpr uint64_t kTypeTensor = 1;
constexpr uint64_t kTensorTypeShape = 2;
constexpr uint64_t kShapeDim = 1;
constexpr uint64_t kDimValue = 1;
constexpr uint64_t kTensorDims = 1;
constexpr uint64_t kTensorDataType = 2;
constexpr uint64_t kTensorFloatData = 4;
constexpr uint64_t kTensorName = 8;
constexpr uint64_t kTensorRawData = 9;
constexpr uint64_t kTensorDoubleData = 10;

// A bounds-checked cursor over one message's bytes; `base` is the message's offset in the file.
class WireReader {
 public:
  WireReader(std::string_view data, uint64_t base) : data_(data), base_(base) {}

  bool done() const { return pos_ == data_.size(); }

  std::optional<uint64_t> Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return std::nullopt;
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      if (shift == 63 && byte > 1) return std::nullopt;  // more than 64 bits
      value |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80u) == 0) return value;
    }
    return std::nullopt;
  }

  struct Field {
    uint64_t number = 0;
    int wire_type = 0;
    uint64_t varint = 0;        // kVarint
    std::string_view bytes;     // kLengthDelimited
    uint64_t bytes_offset = 0;  // file offset of `bytes`
  };

  // Reads the next field; fails on truncation, a zero field number or an unknown wire type.
  std::optional<Field> Next() {
    const std::optional<uint64_t> key = Varint();
    if (!key) return std::nullopt;
    Field field;
    field.number = *key >> 3;
    field.wire_type = static_cast<int>(*key & 7);
    if (field.number == 0 || field.number > (uint64_t{1} << 29)) return std::nullopt;
    switch (field.wire_type) {
      case kVarint: {
        const std::optional<uint64_t> v = Varint();
        if (!v) return std::nullopt;
        field.varint = *v;
        return field;
      }
      case kFixed64:
        if (data_.size() - pos_ < 8) return std::nullopt;
        pos_ += 8;
        return field;
      case kFixed32:
        if (data_.size() - pos_ < 4) return std::nullopt;
        pos_ += 4;
        return field;
      case kLengthDelimited: {
        const std::optional<uint64_t> len = Varint();
        if (!len || *len > data_.size() - pos_) return std::nullopt;
        field.bytes = data_.substr(pos_, static_cast<size_t>(*len));
        field.bytes_offset = base_ + pos_;
        pos_ += static_cast<size_t>(*len);
        return field;
      }
      default:
        return std::nullopt;
    }
  }

 private:
  std::string_view data_;
  uint64_t base_;
  size_t pos_ = 0;
};

absl::Status Malformed(std::string_view what, uint64_t offset) {
  return absl::InvalidArgumentError(
      absl::StrCat("not an ONNX model: malformed ", std::string(what), " at byte ", offset));
}

absl::Status ParseTensor(std::string_view bytes, uint64_t base, std::vector<TensorRange>& out) {
  WireReader reader(bytes, base);
  TensorRange tensor;
  struct Data {
    int field;
    uint64_t offset;
    uint64_t length;
  };
  std::vector<Data> data;
  while (!reader.done()) {
    const auto field = reader.Next();
    if (!field) return Malformed("initializer", base);
    if (field->number == kTensorDims) {
      if (field->wire_type == kVarint) {
        tensor.dims.push_back(static_cast<int64_t>(field->varint));
      } else if (field->wire_type == kLengthDelimited) {  // packed
        WireReader packed(field->bytes, field->bytes_offset);
        while (!packed.done()) {
          const auto dim = packed.Varint();
          if (!dim) return Malformed("initializer dims", field->bytes_offset);
          tensor.dims.push_back(static_cast<int64_t>(*dim));
        }
      } else {
        return Malformed("initializer dims", base);
      }
    } else if (field->number == kTensorDataType) {
      if (field->wire_type != kVarint) return Malformed("initializer data_type", base);
      tensor.data_type = static_cast<int32_t>(field->varint);
    } else if (field->number == kTensorName) {
      if (field->wire_type != kLengthDelimited) return Malformed("initializer name", base);
      tensor.name = std::string(field->bytes);
    } else if ((field->number == kTensorRawData || field->number == kTensorFloatData ||
                field->number == kTensorDoubleData) &&
               field->wire_type == kLengthDelimited) {
      // Unpacked float_data (one fixed32 per field) is legal but never written by ONNX tools;
      // its bytes stay structure.
      if (!field->bytes.empty()) {
        data.push_back(Data{static_cast<int>(field->number), field->bytes_offset,
                            static_cast<uint64_t>(field->bytes.size())});
      }
    }
  }
  for (const Data& d : data) {
    TensorRange range = tensor;
    range.field = d.field;
    range.offset = d.offset;
    range.length = d.length;
    out.push_back(std::move(range));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<TensorRange>> ParseOnnxLayout(std::string_view model) {
  std::vector<TensorRange> tensors;
  WireReader top(model, 0);
  bool saw_graph = false;
  while (!top.done()) {
    const auto field = top.Next();
    if (!field) return Malformed("ModelProto", 0);
    if (field->number != kModelGraph) continue;
    if (field->wire_type != kLengthDelimited) return Malformed("graph", 0);
    // A repeated singular message field is legal protobuf (merged); ONNX writers never do it.
    if (saw_graph) return Malformed("graph (repeated)", field->bytes_offset);
    saw_graph = true;
    WireReader graph(field->bytes, field->bytes_offset);
    while (!graph.done()) {
      const auto g = graph.Next();
      if (!g) return Malformed("graph", field->bytes_offset);
      if (g->number != kGraphInitializer) continue;
      if (g->wire_type != kLengthDelimited) return Malformed("initializer", field->bytes_offset);
      if (absl::Status s = ParseTensor(g->bytes, g->bytes_offset, tensors); !s.ok()) return s;
    }
  }
  if (!saw_graph) return absl::InvalidArgumentError("not an ONNX model: no graph");
  return tensors;
}

int WordWidthForDataType(int32_t data_type) {
  switch (data_type) {
    case 1:   // FLOAT
    case 6:   // INT32
    case 7:   // INT64
    case 11:  // DOUBLE
    case 12:  // UINT32
    case 13:  // UINT64
      return 4;
    case 4:   // UINT16
    case 5:   // INT16
    case 10:  // FLOAT16
    case 16:  // BFLOAT16
      return 2;
    default:
      return 1;
  }
}

double AlignedTensorFraction(std::string_view old_model, std::string_view new_model) {
  auto old_layout = ParseOnnxLayout(old_model);
  auto new_layout = ParseOnnxLayout(new_model);
  if (!old_layout.ok() || !new_layout.ok() || new_model.empty()) return 0;
  std::map<std::string, uint64_t> old_lengths;
  for (const TensorRange& t : *old_layout) old_lengths[t.name] = t.length;
  uint64_t aligned = 0;
  for (const TensorRange& t : *new_layout) {
    auto it = old_lengths.find(t.name);
    if (it != old_lengths.end() && it->second == t.length) aligned += t.length;
  }
  return static_cast<double>(aligned) / static_cast<double>(new_model.size());
}

namespace {

absl::Status NotOnnx(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("not an ONNX model: ", std::string(what)));
}

// TensorShapeProto: one Dimension per `dim`; a dim_value of 0 or a dim_param leaves it open.
absl::Status ParseShape(std::string_view bytes, OnnxTensorInfo& out) {
  WireReader shape(bytes, 0);
  out.has_shape = true;
  while (!shape.done()) {
    const auto dim = shape.Next();
    if (!dim) return NotOnnx("malformed tensor shape");
    if (dim->number != kShapeDim) continue;
    if (dim->wire_type != kLengthDelimited) return NotOnnx("malformed tensor dimension");
    WireReader fields(dim->bytes, 0);
    int64_t value = -1;
    while (!fields.done()) {
      const auto f = fields.Next();
      if (!f) return NotOnnx("malformed tensor dimension");
      if (f->number == kDimValue && f->wire_type == kVarint) {
        const auto v = static_cast<int64_t>(f->varint);
        value = v > 0 ? v : -1;
      }
    }
    out.dims.push_back(value);
  }
  return absl::OkStatus();
}

// ValueInfoProto of a graph input or output; only tensor types are accepted.
absl::StatusOr<OnnxTensorInfo> ParseValueInfo(std::string_view bytes) {
  OnnxTensorInfo info;
  bool is_tensor = false;
  WireReader reader(bytes, 0);
  while (!reader.done()) {
    const auto field = reader.Next();
    if (!field) return NotOnnx("malformed graph input or output");
    if (field->number == kValueInfoName && field->wire_type == kLengthDelimited) {
      info.name = std::string(field->bytes);
    } else if (field->number == kValueInfoType && field->wire_type == kLengthDelimited) {
      WireReader type(field->bytes, 0);
      while (!type.done()) {
        const auto t = type.Next();
        if (!t) return NotOnnx("malformed value type");
        if (t->number != kTypeTensor || t->wire_type != kLengthDelimited) continue;
        is_tensor = true;
        WireReader tensor(t->bytes, 0);
        while (!tensor.done()) {
          const auto tf = tensor.Next();
          if (!tf) return NotOnnx("malformed tensor type");
          if (tf->number == kTensorTypeShape && tf->wire_type == kLengthDelimited) {
            if (absl::Status s = ParseShape(tf->bytes, info); !s.ok()) return s;
          }
        }
      }
    }
  }
  if (info.name.empty()) return NotOnnx("a graph input or output has no name");
  if (!is_tensor) {
    return NotOnnx(absl::StrCat("graph input or output '", info.name, "' is not a tensor"));
  }
  return info;
}

absl::StatusOr<OnnxSignature> ParseSignature(std::string_view model) {
  OnnxSignature signature;
  WireReader top(model, 0);
  std::optional<std::string_view> graph_bytes;
  while (!top.done()) {
    const auto field = top.Next();
    if (!field) return NotOnnx("malformed ModelProto");
    if (field->number == kModelIrVersion && field->wire_type == kVarint) {
      signature.ir_version = static_cast<int64_t>(field->varint);
    } else if (field->number == kModelGraph) {
      if (field->wire_type != kLengthDelimited || graph_bytes) return NotOnnx("malformed graph");
      graph_bytes = field->bytes;
    }
  }
  if (signature.ir_version <= 0) return NotOnnx("no ir_version");
  if (!graph_bytes) return NotOnnx("no graph");
  std::set<std::string, std::less<>> initializers;
  std::vector<OnnxTensorInfo> inputs;
  WireReader graph(*graph_bytes, 0);
  while (!graph.done()) {
    const auto g = graph.Next();
    if (!g) return NotOnnx("malformed graph");
    if (g->wire_type != kLengthDelimited) continue;
    if (g->number == kGraphInitializer) {
      WireReader tensor(g->bytes, 0);
      while (!tensor.done()) {
        const auto t = tensor.Next();
        if (!t) return NotOnnx("malformed initializer");
        if (t->number == kTensorName && t->wire_type == kLengthDelimited) {
          initializers.emplace(t->bytes);
        }
      }
    } else if (g->number == kGraphInput || g->number == kGraphOutput) {
      auto info = ParseValueInfo(g->bytes);
      if (!info.ok()) return info.status();
      (g->number == kGraphInput ? inputs : signature.outputs).push_back(*std::move(info));
    }
  }
  for (OnnxTensorInfo& input : inputs) {
    if (!initializers.contains(input.name)) signature.inputs.push_back(std::move(input));
  }
  if (signature.outputs.empty()) return NotOnnx("the graph has no outputs");
  return signature;
}

}  // namespace
}  // namespace edgefleet::delta::internal

namespace edgefleet::delta {

absl::StatusOr<OnnxSignature> ParseOnnxSignature(std::string_view model) {
  return internal::ParseSignature(model);
}

}  // namespace edgefleet::delta
