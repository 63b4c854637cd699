#include "tests/fuzz/fuzz_targets.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/delta/delta.h"

namespace edgefleet::delta::fuzz {
namespace {

// Output is only counted: the fuzzer looks for crashes, leaks and undefined behaviour.
class DiscardSink final : public ByteSink {
 public:
  absl::Status Write(std::string_view data) override {
    bytes_ += data.size();
    return absl::OkStatus();
  }

 private:
  uint64_t bytes_ = 0;
};

// A deterministic generator, so the seeds and the replay test see the same base files forever.
uint32_t Next(uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return state >> 8;
}

std::string Structured(size_t n, uint32_t seed) {
  std::string out;
  while (out.size() < n) {
    out.append("layer.");
    out.append(std::to_string(Next(seed) % 32));
    out.push_back(static_cast<char>(Next(seed) % 5));
  }
  out.resize(n);
  return out;
}

void Varint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void LengthDelimited(int field, std::string_view bytes, std::string& out) {
  Varint(static_cast<uint64_t>(field) << 3 | 2, out);
  Varint(bytes.size(), out);
  out.append(bytes);
}

// TensorProto { dims, data_type, name, raw_data } in protobuf wire format.
template <typename T>
std::string Tensor(const std::string& name, int data_type, const std::vector<T>& values,
                   const std::vector<uint64_t>& dims) {
  std::string t;
  for (uint64_t d : dims) {
    Varint(1 << 3 | 0, t);  // dims
    Varint(d, t);
  }
  Varint(2 << 3 | 0, t);  // data_type
  Varint(data_type, t);
  LengthDelimited(8, name, t);
  std::string raw(values.size() * sizeof(T), '\0');
  std::memcpy(raw.data(), values.data(), raw.size());
  LengthDelimited(9, raw, t);
  return t;
}

constexpr int kFloat = 1;
constexpr int kFloat16 = 10;

// The bits of a float16 that holds `v` exactly (every value given is a multiple of 2^-10 of
// magnitude in [2^-10, 2)).
uint16_t Float16Bits(float v) {
  if (v == 0) return 0;
  int e;
  const float f = std::frexp(std::fabs(v), &e);  // |v| = f * 2^e, f in [0.5, 1)
  const auto mantissa = static_cast<uint16_t>((f * 2 - 1) * 1024);
  return static_cast<uint16_t>((v < 0 ? 0x8000 : 0) | ((e - 1 + 15) << 10) | mantissa);
}

// The base weights, changed by `change(weight, index)`: w1 (float32, 32 x 32) and w2 (float32,
// 96), indexed together; then w3 (float16, 32 x 32, indexed on), which only `change_float16`
// models change (their changes keep it on multiples of 2^-10, exact in float16).
template <typename Change>
std::string Model(Change change, bool change_float16 = false) {
  uint32_t seed = 7;
  std::vector<float> w1(1024), w2(96), w3(1024);
  for (std::vector<float>* w : {&w1, &w2}) {
    for (float& v : *w) v = static_cast<float>(Next(seed) % 2000) / 1000.0f - 1.0f;
  }
  for (float& v : w3) v = static_cast<float>(static_cast<int>(Next(seed) % 2048) - 1024) / 1024;
  for (size_t i = 0; i < w1.size(); ++i) w1[i] = change(w1[i], i);
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = change(w2[i], w1.size() + i);
  std::vector<uint16_t> w3_bits(w3.size());
  for (size_t i = 0; i < w3.size(); ++i) {
    w3_bits[i] = Float16Bits(change_float16 ? change(w3[i], w1.size() + w2.size() + i) : w3[i]);
  }
  std::string graph;
  LengthDelimited(2, "fuzz_graph", graph);  // GraphProto.name
  LengthDelimited(5, Tensor("w1", kFloat, w1, {32, 32}), graph);
  LengthDelimited(5, Tensor("w2", kFloat, w2, {96}), graph);
  LengthDelimited(5, Tensor("w3", kFloat16, w3_bits, {32, 32}), graph);
  std::string model;
  Varint(1 << 3 | 0, model);  // ir_version
  Varint(8, model);
  LengthDelimited(7, graph, model);
  return model;
}

absl::Status RunAgainst(const std::string& old_data, std::string_view patch) {
  DiscardSink sink;
  // A low cap keeps each run fast; the size checks themselves are what is being exercised.
  return Apply(old_data, patch, sink, ApplyOptions{.max_new_size_bytes = uint64_t{16} << 20});
}

}  // namespace

const std::string& OldBlob() {
  static const std::string* blob = new std::string(Structured(4096, 1));
  return *blob;
}

const std::string& NewBlob() {
  static const std::string* blob = [] {
    std::string s = OldBlob().substr(1000) + Structured(300, 2) + OldBlob().substr(0, 1000);
    for (size_t i = 0; i < s.size(); i += 97) s[i] = static_cast<char>(s[i] + 1);
    return new std::string(s);
  }();
  return *blob;
}

const std::string& OldModel() {
  static const std::string* model = new std::string(Model([](float w, size_t) { return w; }));
  return *model;
}

const std::string& NewModel() {
  static const std::string* model =
      new std::string(Model([](float w, size_t i) { return i % 3 == 0 ? w + 0.001f : w; }));
  return *model;
}

const std::string& PrunedModel() {
  static const std::string* model =
      new std::string(Model([](float w, size_t) { return std::fabs(w) < 0.3f ? 0.0f : w; }));
  return *model;
}

const std::string& QuantizedModel() {
  static const std::string* model = new std::string(Model([](float w, size_t) {
    const float scale = 1.0f / 127;
    return std::nearbyint(w / scale) * scale;
  }));
  return *model;
}

const std::string& SparselyChangedModel() {
  static const std::string* model =
      new std::string(Model([](float w, size_t i) { return i % 37 == 0 ? w * 1.5f : w; }));
  return *model;
}

const std::string& LowRankModel() {
  // w1 and w3 (32 x 32) + u v^T with u_r = (r - 16) / 128 and v_c = (c % 5 + 1) / 8; w2
  // unchanged.
  static const std::string* model = new std::string(Model(
      [](float w, size_t i) {
        if (i >= 1024 && i < 1120) return w;
        const size_t k = i < 1024 ? i : i - 1120;
        return w +
               (static_cast<float>(k / 32) - 16.0f) / 128 * static_cast<float>(k % 32 % 5 + 1) / 8;
      },
      /*change_float16=*/true));
  return *model;
}

absl::Status RunBsdiff40(std::string_view patch) { return RunAgainst(OldBlob(), patch); }
absl::Status RunContainer(std::string_view patch) { return RunAgainst(OldBlob(), patch); }
absl::Status RunTensor(std::string_view patch) { return RunAgainst(OldModel(), patch); }

}  // namespace edgefleet::delta::fuzz
