// Tests of the tensor-aware delta codec and the ONNX layout walker: round trips over the model
// changes a fleet sees (fine-tune, retrain of the head, pruning, inserted and renamed layers,
// raw weight files), hostile layouts and payloads, and the size advantage that is its purpose.
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/delta/delta.h"
#include "common/delta/internal/codecs.h"
#include "common/delta/internal/match_estimate.h"
#include "common/delta/internal/onnx_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edgefleet::delta::internal {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Writes model pairs: base.onnx and variants of it, plus each base tensor's raw bytes (NAME.bin)
// so the layout can be checked against numpy's own bytes.
constexpr char kMakeModels[] = R"PY(
import sys, os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(7)
shapes = [("dense1.weight", (256, 1024)), ("dense1.bias", (1024,)),
          ("dense2.weight", (1024, 512)), ("dense2.bias", (512,)),
          ("dense3.weight", (512, 256)), ("dense3.bias", (256,)),
          ("head.weight", (256, 10)), ("head.bias", (10,))]
base = [(n, rng.normal(0.0, 0.05, size=s).astype(np.float32)) for n, s in shapes]

def save(name, tensors):
    nodes, prev = [], "input"
    for i in range(0, len(tensors), 2):
        (wn, w), (bn, b) = tensors[i], tensors[i + 1]
        mm, add = f"mm{i}", f"add{i}"
        nodes.append(helper.make_node("MatMul", [prev, wn], [mm]))
        last = i + 2 == len(tensors)
        nodes.append(helper.make_node("Add", [mm, bn], ["logits" if last else add]))
        if not last:
            nodes.append(helper.make_node("Relu", [add], [f"relu{i}"]))
            prev = f"relu{i}"
    inits = [numpy_helper.from_array(t, n) for n, t in tensors]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, os.path.join(out, name))

save("base.onnx", base)
for n, t in base:
    t.tofile(os.path.join(out, n + ".bin"))
save("identical.onnx", base)
head = [(n, rng.normal(0.0, 0.05, size=t.shape).astype(np.float32)) if n.startswith("head")
        else (n, t) for n, t in base]
save("last_layer.onnx", head)
tuned = [(n, (t * (1.0 + 1e-3 * rng.normal(size=t.shape))).astype(np.float32)) for n, t in base]
save("finetune.onnx", tuned)
def prune(t):
    cut = np.quantile(np.abs(t), 0.3)
    return np.where(np.abs(t) < cut, np.float32(0), t).astype(np.float32)
save("pruned.onnx", [(n, prune(t)) for n, t in base])
save("pruned_tuned.onnx", [(n, prune(t)) for n, t in tuned])
extra = [("dense2b.weight", rng.normal(0.0, 0.05, size=(512, 512)).astype(np.float32)),
         ("dense2b.bias", rng.normal(0.0, 0.05, size=(512,)).astype(np.float32))]
save("inserted.onnx", tuned[:4] + extra + tuned[4:])
save("renamed.onnx", [("encoder.fc2.weight" if n == "dense2.weight" else n, t) for n, t in tuned])
# The largest matrix's rows in reverse order: all of it is in the old file, none where it was.
save("rows_reversed.onnx", [(n, t[::-1].copy() if n == "dense1.weight" else t) for n, t in base])
# Fake-quantized (QDQ) to int8: one scale per tensor, and one per row (per channel, as exporters
# quantize Gemm and Conv weights, whose rows are output channels).
def qdq(t):
    scale = np.float32(np.abs(t).max() / np.float32(127))
    return (np.clip(np.round(t / scale), -127, 127) * scale).astype(np.float32)
def qdq_rows(t):
    scale = (np.abs(t).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    return (np.clip(np.round(t / scale), -127, 127) * scale).astype(np.float32)
save("qdq.onnx", [(n, qdq(t)) for n, t in base])
save("qdq_rows.onnx", [(n, qdq_rows(t) if t.ndim == 2 else t) for n, t in base])
# A rank-8 LoRA adapter merged into every weight matrix in float32: W + 2 * B @ A.
def merge(t):
    b = rng.normal(0.0, 0.05 * 0.05, size=(t.shape[0], 8)).astype(np.float32)
    a = rng.normal(0.0, 0.05, size=(8, t.shape[1])).astype(np.float32)
    return (t + np.float32(2) * (b @ a)).astype(np.float32)
save("lora.onnx", [(n, merge(t) if t.ndim == 2 else t) for n, t in base])

# Other element widths: float16 (2-byte words), int8 (bytes), double (split into 4-byte words).
def save_plain(name, tensors):
    graph = helper.make_graph([], "weights", [], [],
                              [numpy_helper.from_array(t, n) for n, t in tensors])
    onnx.save(helper.make_model(graph), os.path.join(out, name))
mixed = [("half", rng.normal(0.0, 0.05, size=(300, 300)).astype(np.float16)),
         ("quant", rng.integers(-128, 128, size=4001).astype(np.int8)),
         ("double", rng.normal(0.0, 0.05, size=5000).astype(np.float64))]
save_plain("mixed_v1.onnx", mixed)
save_plain("mixed_v2.onnx", [
    ("half", (mixed[0][1] * (1 + 1e-2 * rng.normal(size=(300, 300)))).astype(np.float16)),
    ("quant", np.where(rng.random(4001) < 0.1, mixed[1][1] ^ 1, mixed[1][1]).astype(np.int8)),
    ("double", mixed[2][1] * (1 + 1e-6 * rng.normal(size=5000)))])
# A float16 deployment with a rank-8 adapter merged in float16.
b16 = rng.normal(0.0, 0.05 * 0.05, size=(300, 8)).astype(np.float32)
a16 = rng.normal(0.0, 0.05, size=(8, 300)).astype(np.float32)
save_plain("mixed_lora.onnx", [(mixed[0][0], (mixed[0][1] + (2 * b16 @ a16).astype(np.float16))
                                .astype(np.float16))] + mixed[1:])
)PY";

class TensorCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::path(::testing::TempDir()) / "tensor_codec_XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  void MakeModels() {
    WriteFile(dir_ / "make.py", kMakeModels);
    const std::string cmd = "/usr/bin/python3 " + (dir_ / "make.py").string() + " " + dir_.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  std::string Model(const std::string& name) { return ReadFile(dir_ / name); }

  // Size of a reference tool's patch, or 0 when the tool failed.
  uint64_t ToolPatchSize(const std::string& command_format, std::string_view old_data,
                         std::string_view new_data) {
    WriteFile(dir_ / "tool_old", old_data);
    WriteFile(dir_ / "tool_new", new_data);
    fs::remove(dir_ / "tool_patch");
    std::string cmd = command_format;
    for (auto [key, value] : {std::pair<std::string, std::string>{"OLD", (dir_ / "tool_old")},
                              {"NEW", (dir_ / "tool_new")},
                              {"PATCH", (dir_ / "tool_patch")}}) {
      for (size_t pos; (pos = cmd.find(key)) != std::string::npos;)
        cmd.replace(pos, key.size(), value);
    }
    cmd += " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return 0;
    return fs::file_size(dir_ / "tool_patch");
  }

  fs::path dir_;
};

// Encodes, decodes and checks the result; returns the payload size.
// Level 3 keeps round trips fast; the size test uses the production level.
uint64_t RoundTrip(std::string_view old_data, std::string_view new_data, int zstd_level = 3) {
  StringSink payload;
  DiffOptions options;
  options.zstd_level = zstd_level;
  absl::Status encoded = TensorEncode(old_data, new_data, payload, options);
  EXPECT_TRUE(encoded.ok()) << encoded;
  StringSink out;
  absl::Status decoded = TensorDecode(old_data, payload.data(), new_data.size(), out);
  EXPECT_TRUE(decoded.ok()) << decoded;
  EXPECT_EQ(out.data().size(), new_data.size());
  EXPECT_TRUE(out.data() == new_data) << "decoded bytes differ from the new file";
  return payload.data().size();
}

std::string RandomFloats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::string out(count * sizeof(float), '\0');
  for (size_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    std::memcpy(out.data() + i * sizeof(float), &v, sizeof(float));
  }
  return out;
}

// Multiplies every float by (1 + scale * N(0, 1)), as a fine-tune does.
std::string Perturb(std::string data, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (size_t i = 0; i + sizeof(float) <= data.size(); i += sizeof(float)) {
    float v;
    std::memcpy(&v, data.data() + i, sizeof(float));
    v *= 1.0f + scale * dist(rng);
    std::memcpy(data.data() + i, &v, sizeof(float));
  }
  return data;
}

TEST_F(TensorCodecTest, LayoutFindsEveryInitializerAndItsBytes) {
  MakeModels();
  const std::string model = Model("base.onnx");
  absl::StatusOr<std::vector<TensorRange>> layout = ParseOnnxLayout(model);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->size(), 8u);
  EXPECT_EQ((*layout)[0].name, "dense1.weight");
  EXPECT_THAT((*layout)[0].dims, ::testing::ElementsAre(256, 1024));
  EXPECT_THAT((*layout)[7].dims, ::testing::ElementsAre(10));
  for (const TensorRange& t : *layout) {
    EXPECT_EQ(t.data_type, 1) << t.name;
    EXPECT_EQ(t.field, 9) << t.name;
    ASSERT_LE(t.offset + t.length, model.size()) << t.name;
    EXPECT_TRUE(model.substr(t.offset, t.length) == ReadFile(dir_ / (t.name + ".bin")))
        << t.name << ": the reported range does not hold the tensor's bytes";
  }
}

TEST_F(TensorCodecTest, LayoutReportsFloatDataOfTensorsWithoutRawData) {
  // ModelProto{graph{initializer{dims:2 data_type:1 float_data:[1.5, -2] name:"w"}}}, by hand.
  std::string tensor = "\x08\x02\x10\x01";
  const float values[2] = {1.5f, -2.0f};
  tensor += "\x22\x08";
  tensor.append(reinterpret_cast<const char*>(values), sizeof(values));
  tensor += "\x42\x01w";
  std::string graph =
      absl::StrCat("\x2a", std::string(1, static_cast<char>(tensor.size())), tensor);
  std::string model =
      absl::StrCat("\x08\x07\x3a", std::string(1, static_cast<char>(graph.size())), graph);
  absl::StatusOr<std::vector<TensorRange>> layout = ParseOnnxLayout(model);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->size(), 1u);
  EXPECT_EQ((*layout)[0].name, "w");
  EXPECT_EQ((*layout)[0].field, 4);
  EXPECT_EQ((*layout)[0].length, 8u);
  EXPECT_EQ(model.substr((*layout)[0].offset, 8),
            std::string(reinterpret_cast<const char*>(values), 8));
}

TEST_F(TensorCodecTest, LayoutRejectsGarbageAndTruncatedModelsWithoutReadingOutOfBounds) {
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng() % 512, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    absl::StatusOr<std::vector<TensorRange>> layout = ParseOnnxLayout(junk);
    if (!layout.ok()) continue;
    for (const TensorRange& t : *layout) ASSERT_LE(t.offset + t.length, junk.size());
  }
  EXPECT_FALSE(ParseOnnxLayout("").ok());
  EXPECT_FALSE(ParseOnnxLayout(RandomFloats(1000, 3)).ok());
  // A varint of eleven continuation bytes and a length far past the end.
  EXPECT_FALSE(ParseOnnxLayout(std::string(11, '\xff')).ok());
  EXPECT_FALSE(ParseOnnxLayout(std::string("\x3a\xff\xff\xff\xff\x0f", 6)).ok());

  MakeModels();
  const std::string model = Model("base.onnx");
  int rejected = 0;
  for (size_t cut = 0; cut < model.size(); cut += 97) {
    const std::string_view prefix(model.data(), cut);
    absl::StatusOr<std::vector<TensorRange>> layout = ParseOnnxLayout(prefix);
    if (!layout.ok()) {
      ++rejected;
      continue;
    }
    for (const TensorRange& t : *layout) ASSERT_LE(t.offset + t.length, cut);
  }
  // Only a cut between top-level fields after the graph parses.
  EXPECT_GE(rejected, static_cast<int>(model.size() / 97) - 1);
}

TEST_F(TensorCodecTest, RoundTripsEveryKindOfModelChange) {
  MakeModels();
  const std::string base = Model("base.onnx");
  for (const char* variant : {"identical.onnx", "last_layer.onnx", "finetune.onnx", "pruned.onnx",
                              "pruned_tuned.onnx", "inserted.onnx", "renamed.onnx"}) {
    SCOPED_TRACE(variant);
    const std::string next = Model(variant);
    const uint64_t size = RoundTrip(base, next);
    std::cout << variant << ": " << next.size() << " -> patch " << size << " bytes\n";
    // And back again: a rollback patch is the same codec in the other direction.
    RoundTrip(next, base);
  }
}

TEST_F(TensorCodecTest, RoundTripsHalfFloatInt8AndDoubleTensors) {
  MakeModels();
  const std::string v1 = Model("mixed_v1.onnx");
  const std::string v2 = Model("mixed_v2.onnx");
  absl::StatusOr<std::vector<TensorRange>> layout = ParseOnnxLayout(v2);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->size(), 3u);
  EXPECT_EQ(WordWidthForDataType((*layout)[0].data_type), 2);
  EXPECT_EQ(WordWidthForDataType((*layout)[1].data_type), 1);
  EXPECT_EQ(WordWidthForDataType((*layout)[2].data_type), 4);
  const uint64_t size = RoundTrip(v1, v2);
  RoundTrip(v2, v1);
  // Small changes in every element of each width still cost well under the file.
  EXPECT_LT(size, v2.size() * 6 / 10);
}

TEST_F(TensorCodecTest, PatchSizesReflectHowMuchChanged) {
  MakeModels();
  const std::string base = Model("base.onnx");
  const uint64_t identical = RoundTrip(base, Model("identical.onnx"));
  const uint64_t head = RoundTrip(base, Model("last_layer.onnx"));
  const uint64_t inserted = RoundTrip(base, Model("inserted.onnx"));
  const uint64_t renamed = RoundTrip(base, Model("renamed.onnx"));
  const uint64_t finetune = RoundTrip(base, Model("finetune.onnx"));
  EXPECT_LT(identical, 1024u);
  // Only the head (2,570 floats) changed.
  EXPECT_LT(head, 16u * 1024);
  // A renamed tensor is still aligned with its old bytes: no bigger than the fine-tune it carries.
  EXPECT_LT(renamed, finetune + 1024);
  // The inserted layer (262,656 new floats) costs about itself, not a re-send of later layers.
  EXPECT_LT(inserted, finetune + 262656u * 4);
}

TEST_F(TensorCodecTest, FineTunedModelPatchBeatsZstdPatchFromByThirtyPercent) {
  MakeModels();
  for (const char* variant : {"finetune.onnx", "pruned.onnx", "pruned_tuned.onnx"}) {
    SCOPED_TRACE(variant);
    const std::string base = Model("base.onnx");
    const std::string next = Model(variant);
    const uint64_t ours = RoundTrip(base, next, DiffOptions{}.zstd_level);
    const uint64_t zstd = ToolPatchSize(
        "/usr/bin/zstd -q -f -19 --long=31 --patch-from=OLD NEW -o PATCH", base, next);
    ASSERT_GT(zstd, 0u) << "zstd --patch-from failed";
    // bsdiff takes tens of seconds on these files; one pair is enough to keep it honest.
    const uint64_t bsdiff = std::string(variant) == "finetune.onnx"
                                ? ToolPatchSize("/usr/bin/bsdiff OLD NEW PATCH", base, next)
                                : 0;
    const uint64_t xdelta = ToolPatchSize("/usr/bin/xdelta3 -9 -f -e -s OLD NEW PATCH", base, next);
    std::cout << variant << " (" << next.size() << " bytes): tensor " << ours << ", zstd -19 "
              << "--patch-from " << zstd << ", bsdiff " << bsdiff << ", xdelta3 -9 " << xdelta
              << "\n";
    EXPECT_LE(ours, zstd * 7 / 10);
    if (bsdiff != 0) {
      EXPECT_LE(ours, bsdiff * 7 / 10);
    }
    if (xdelta != 0) {
      EXPECT_LE(ours, xdelta * 7 / 10);
    }
  }
}

TEST_F(TensorCodecTest, QuantizedModelsCostAFewKilobytesPerTensorOrChannelScale) {
  MakeModels();
  const std::string base = Model("base.onnx");
  for (const char* variant : {"qdq.onnx", "qdq_rows.onnx"}) {
    SCOPED_TRACE(variant);
    const std::string next = Model(variant);
    const uint64_t ours = RoundTrip(base, next, DiffOptions{}.zstd_level);
    const uint64_t zstd = ToolPatchSize(
        "/usr/bin/zstd -q -f -19 --long=31 --patch-from=OLD NEW -o PATCH", base, next);
    std::cout << variant << " (" << next.size() << " bytes): tensor " << ours
              << ", zstd -19 --patch-from " << zstd << "\n";
    // Every weight is predicted from the old one: what remains is the table of scales (one per
    // row of the per-channel model: 1,034 rows) and the unquantized biases.
    EXPECT_LT(ours, 32u * 1024);
    EXPECT_LT(ours * 20, zstd);
  }
}

TEST_F(TensorCodecTest, MergedLowRankAdapterCostsItsFactorsNotItsWeights) {
  MakeModels();
  const std::string base = Model("base.onnx");
  const std::string next = Model("lora.onnx");
  const uint64_t ours = RoundTrip(base, next, DiffOptions{}.zstd_level);
  const uint64_t zstd =
      ToolPatchSize("/usr/bin/zstd -q -f -19 --long=31 --patch-from=OLD NEW -o PATCH", base, next);
  ASSERT_GT(zstd, 0u) << "zstd --patch-from failed";
  std::cout << "lora.onnx (" << next.size() << " bytes): tensor " << ours
            << ", zstd -19 --patch-from " << zstd << "\n";
  // All 919,040 matrix weights changed. The factors are rank 8 x (rows + cols) floats, 120 KB
  // over the four matrices; the merge's rounding adds about one bit per weight.
  EXPECT_LT(ours, 300u * 1024);
  EXPECT_LT(ours * 10, zstd);

  // The same in float16: 90,000 weights, 19 KB of factors in float32 (29 KB patches), 9.5 KB in
  // float16, which predicts float16 weights as well.
  const std::string half_old = Model("mixed_v1.onnx");
  const std::string half_new = Model("mixed_lora.onnx");
  const uint64_t half = RoundTrip(half_old, half_new, DiffOptions{}.zstd_level);
  const uint64_t half_zstd = ToolPatchSize(
      "/usr/bin/zstd -q -f -19 --long=31 --patch-from=OLD NEW -o PATCH", half_old, half_new);
  std::cout << "mixed_lora.onnx (" << half_new.size() << " bytes): tensor " << half
            << ", zstd -19 --patch-from " << half_zstd << "\n";
  EXPECT_LT(half, 24u * 1024);
  EXPECT_LT(half * 7, half_zstd);
}

TEST_F(TensorCodecTest, RoundTripsRawFloatFiles) {
  const std::string old_data = RandomFloats(300000, 11);
  // Same length: aligned by offset, far smaller than the file.
  std::string tuned = Perturb(old_data, 1e-3f, 12);
  const uint64_t aligned = RoundTrip(old_data, tuned);
  EXPECT_LT(aligned, tuned.size() * 6 / 10);
  // Same length but not a multiple of four: the tail is residual.
  RoundTrip(old_data + "xyz", tuned + "abc");
  // Different lengths: floats inserted in the middle.
  std::string grown = old_data.substr(0, 400000) + RandomFloats(1000, 13) + old_data.substr(400000);
  RoundTrip(old_data, grown);
  RoundTrip(grown, old_data);
  RoundTrip(old_data, old_data.substr(0, 12345));
}

TEST_F(TensorCodecTest, RoundTripsEmptyFiles) {
  const std::string data = RandomFloats(5000, 21);
  RoundTrip("", data);
  RoundTrip(data, "");
  RoundTrip("", "");
  RoundTrip("a", "b");
}

TEST_F(TensorCodecTest, RoundTripsBetweenOnnxAndOtherFiles) {
  MakeModels();
  const std::string base = Model("base.onnx");
  RoundTrip(base, RandomFloats(1000, 5));
  RoundTrip(RandomFloats(1000, 5), base);
  // Same length, one side not parseable: the offset alignment still applies.
  std::string broken = base;
  broken[0] = '\xff';
  RoundTrip(base, broken);
}

// auto's estimate of whether byte matching can beat the tensor patch, on ONNX models: tensors
// aligned by name that changed in place (retrained, fine-tuned, a layer inserted, a tensor
// renamed) leave a matcher nothing to copy; rows moved within a tensor do.
TEST_F(TensorCodecTest, MatchingEstimateFollowsTheTensorAlignment) {
  MakeModels();
  const std::string base = Model("base.onnx");
  for (const char* name : {"last_layer.onnx", "finetune.onnx", "inserted.onnx", "renamed.onnx"}) {
    const MatchingEstimate estimate = EstimateMatching(base, Model(name));
    EXPECT_GT(estimate.costly, 0u) << name;
    EXPECT_EQ(estimate.found, 0u) << name;
    EXPECT_FALSE(estimate.can_pay) << name;
  }
  // Structure is residual, coded with old structure as the zstd prefix: found only there, it
  // is nothing a matcher adds.
  const MatchingEstimate identical = EstimateMatching(base, Model("identical.onnx"));
  EXPECT_EQ(identical.found, 0u);
  EXPECT_FALSE(identical.can_pay);
  const MatchingEstimate moved = EstimateMatching(base, Model("rows_reversed.onnx"));
  EXPECT_GT(moved.costly, moved.sampled / 5) << "dense1.weight is a quarter of the file";
  EXPECT_TRUE(moved.can_pay);
}

TEST_F(TensorCodecTest, DecodeRejectsWrongSizesAndDamagedPayloads) {
  MakeModels();
  const std::string base = Model("base.onnx");
  const std::string next = Model("inserted.onnx");
  StringSink payload;
  DiffOptions fast;
  fast.zstd_level = 3;
  ASSERT_TRUE(TensorEncode(base, next, payload, fast).ok());
  const std::string& p = payload.data();
  {
    StringSink out;
    EXPECT_FALSE(TensorDecode(base, p, next.size() + 1, out).ok());
  }
  {
    StringSink out;
    EXPECT_FALSE(TensorDecode(base, p, next.size() - 1, out).ok());
  }
  {
    // The old file is not the one the patch was made from: the prefix or a region falls outside.
    StringSink out;
    EXPECT_FALSE(TensorDecode(base.substr(0, 1000), p, next.size(), out).ok());
  }
  for (size_t cut = 0; cut < p.size(); cut += std::max<size_t>(1, p.size() / 300)) {
    StringSink out;
    EXPECT_FALSE(TensorDecode(base, std::string_view(p.data(), cut), next.size(), out).ok())
        << "truncated at " << cut;
    EXPECT_LE(out.data().size(), next.size());
  }
  std::mt19937 rng(9);
  int failed = 0;
  for (int i = 0; i < 300; ++i) {
    std::string damaged = p;
    const size_t at = i < 64 ? static_cast<size_t>(i) : rng() % damaged.size();
    damaged[at] = static_cast<char>(damaged[at] ^ (1 + rng() % 255));
    StringSink out;
    const absl::Status s = TensorDecode(base, damaged, next.size(), out);
    // Damage inside plane data may still decode (the container's digest catches that); what
    // must never happen is a crash or output beyond the declared size.
    if (!s.ok()) ++failed;
    EXPECT_LE(out.data().size(), next.size());
    if (s.ok()) {
      EXPECT_EQ(out.data().size(), next.size());
    }
  }
  EXPECT_GT(failed, 0);
}

TEST_F(TensorCodecTest, PublicDiffAndApplyUseTheTensorCodec) {
  MakeModels();
  const std::string base = Model("base.onnx");
  const std::string next = Model("pruned_tuned.onnx");
  StringSink patch;
  DiffOptions options;
  options.zstd_level = 3;
  absl::StatusOr<DiffResult> diff = Diff(base, next, Codec::kTensor, patch, options);
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_EQ(diff->codec, Codec::kTensor);
  absl::StatusOr<PatchInfo> info = Inspect(patch.data());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->codec, Codec::kTensor);
  EXPECT_EQ(info->new_size_bytes, next.size());
  StringSink out;
  ApplyOptions apply;
  apply.expected_new_size_bytes = next.size();
  ASSERT_TRUE(Apply(base, patch.data(), out, apply).ok());
  EXPECT_TRUE(out.data() == next);
}

void PutVarint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  out.push_back(static_cast<char>(v));
}

std::string ZstdFrame(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3));
  return out;
}

// A payload with a hand-written table, no plane data and `residual` as the residual. Version 1
// has no sparse-plane mask; later versions get an empty one.
std::string HandMadePayload(const std::string& table, std::string_view residual,
                            uint8_t version = 1) {
  std::string payload("EFT\x01\x00", 5);
  payload[3] = static_cast<char>(version);
  PutVarint(payload, residual.size());
  if (version > 1) PutVarint(payload, 0);
  const std::string table_frame = ZstdFrame(table);
  const std::string residual_frame = residual.empty() ? "" : ZstdFrame(residual);
  PutVarint(payload, table_frame.size());
  for (int i = 0; i < 7; ++i) PutVarint(payload, 0);
  PutVarint(payload, residual_frame.size());
  return payload + table_frame + residual_frame;
}

TEST_F(TensorCodecTest, DecodeRejectsHostileTablesWithoutAllocatingByThem) {
  const std::string old_data(100, 'o');
  std::string residual(100, 'n');
  {
    // Sanity: a table of no prefix and no regions is the residual alone.
    std::string table;
    PutVarint(table, 0);
    PutVarint(table, 0);
    StringSink out;
    ASSERT_TRUE(TensorDecode(old_data, HandMadePayload(table, residual), 100, out).ok());
    EXPECT_EQ(out.data(), residual);
  }
  struct Case {
    const char* what;
    std::vector<uint64_t> table;  // varints
    size_t residual_size;
    const char* error;
  };
  const uint64_t huge = uint64_t{1} << 62;
  const std::vector<Case> cases = {
      {"prefix count far beyond the table", {huge}, 100, "ends early"},
      {"prefix range past the old file", {1, 50, 51, 0}, 100, "prefix range outside"},
      {"prefix range overflowing", {1, huge, huge, 0}, 100, "prefix range outside"},
      {"region count far beyond the table", {0, huge}, 100, "ends early"},
      {"region longer than the output",
       {0, 1, 0, huge, 2 << 2, 0},
       100,
       "beyond the declared output"},
      {"region after more residual than exists",
       {0, 1, 101, 4, 2, 0},
       100,
       "beyond the declared output"},
      {"region's old bytes past the old file", {0, 1, 0, 8, 2, 2 * 96}, 92, "old bytes outside"},
      {"region's old offset before the file", {0, 1, 0, 8, 2, 1}, 92, "old offset outside"},
      {"unknown width", {0, 1, 0, 8, 3, 0}, 92, "unknown region mode"},
      {"unknown transform", {0, 1, 0, 8, 2 | (7 << 2), 0}, 92, "unknown region mode"},
      {"length not a multiple of the width", {0, 1, 0, 6, 2, 0}, 94, "bad region length"},
      {"plane data missing", {0, 1, 0, 8, 2, 0}, 92, "ends early"},
      {"grid step not a number",
       {0, 1, 0, 8, 2 | (5 << 2), 0, std::bit_cast<uint64_t>(std::nan("")), 0, 254},
       92,
       "parameters out of range"},
      {"grid codes reversed",
       {0, 1, 0, 8, 2 | (5 << 2), 0, std::bit_cast<uint64_t>(1.0), 10, 9},
       92,
       "parameters out of range"},
      {"grid on one-byte words",
       {0, 1, 0, 8, 0 | (5 << 2), 0, std::bit_cast<uint64_t>(1.0), 0, 2},
       92,
       "parameters out of range"},
      {"pruning parameters wider than 32 bits",
       {0, 1, 0, 8, 2 | (4 << 2), 0, uint64_t{1} << 40},
       92,
       "bad pruning"},
      // Low rank: varint rank, varint rows, then the factors.
      {"low rank of rank zero", {0, 1, 0, 8, 2 | (6 << 2), 0, 0, 1}, 92, "factor shape"},
      {"low rank beyond the bound", {0, 1, 0, 8, 2 | (6 << 2), 0, 65, 1}, 92, "factor shape"},
      {"low rank rows not dividing the words",
       {0, 1, 0, 8, 2 | (6 << 2), 0, 1, 3},
       92,
       "factor shape"},
      {"low rank of absurd rows", {0, 1, 0, 8, 2 | (6 << 2), 0, 1, huge}, 92, "factor shape"},
      {"low rank on one-byte words",
       {0, 1, 0, 8, 0 | (6 << 2), 0, 1, 1},
       92,
       "parameters out of range"},
      {"low-rank factors missing", {0, 1, 0, 8, 2 | (6 << 2), 0, 1, 1}, 92, "ends early"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string table;
    for (uint64_t v : c.table) PutVarint(table, v);
    StringSink out;
    const absl::Status s = TensorDecode(
        old_data, HandMadePayload(table, residual.substr(0, c.residual_size)), 100, out);
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(c.error));
    EXPECT_LE(out.data().size(), 100u);
  }
  // Version 2 headers: the sparse-plane mask names planes that exist; unknown versions refused.
  std::string table;
  PutVarint(table, 0);
  PutVarint(table, 0);
  std::string v1 = HandMadePayload(table, residual);
  std::string bad_mask = std::string("EFT\x02\x00", 5);
  PutVarint(bad_mask, residual.size());
  PutVarint(bad_mask, 1 << 7);
  StringSink out;
  EXPECT_THAT(std::string(TensorDecode(old_data, bad_mask, 100, out).message()),
              ::testing::HasSubstr("sparse-plane mask"));
  v1[3] = '\x05';
  EXPECT_THAT(std::string(TensorDecode(old_data, v1, 100, out).message()),
              ::testing::HasSubstr("unknown format version 5"));
  // A low-rank region (one row of two words, rank 1) whose factors hold a NaN.
  std::string low_rank;
  for (uint64_t v : {0, 1, 0, 8, 2 | (6 << 2), 0, 1, 1}) PutVarint(low_rank, v);
  for (float f : {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f}) {
    low_rank.append(reinterpret_cast<const char*>(&f), sizeof(f));
  }
  EXPECT_THAT(std::string(TensorDecode(old_data, HandMadePayload(low_rank, residual.substr(0, 92)),
                                       100, out)
                              .message()),
              ::testing::HasSubstr("not finite"));

  // Version 4 names the factors' width after the rows: float32 or float16, nothing else, and a
  // float16 factor must be finite too.
  auto v4_low_rank = [&](uint64_t factor_width, std::vector<uint16_t> halves) {
    std::string t;
    for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{0}, uint64_t{8}, uint64_t{2 | (6 << 2)},
                       uint64_t{0}, uint64_t{1}, uint64_t{1}, factor_width}) {
      PutVarint(t, v);
    }
    for (uint16_t h : halves) t.append(reinterpret_cast<const char*>(&h), sizeof(h));
    StringSink sink;
    return TensorDecode(old_data, HandMadePayload(t, residual.substr(0, 92), 4), 100, sink);
  };
  EXPECT_THAT(std::string(v4_low_rank(3, {}).message()), ::testing::HasSubstr("factor width"));
  EXPECT_THAT(std::string(v4_low_rank(8, {}).message()), ::testing::HasSubstr("factor width"));
  EXPECT_THAT(std::string(v4_low_rank(2, {0x3c00, 0x7c00, 0x3c00}).message()),  // 1, inf, 1
              ::testing::HasSubstr("not finite"));
  EXPECT_THAT(std::string(v4_low_rank(2, {0x3c00, 0x3c00}).message()),  // one factor short
              ::testing::HasSubstr("ends early"));
}

}  // namespace
}  // namespace edgefleet::delta::internal

namespace edgefleet::delta::internal {
namespace {

// auto stops after the tensor codec when the weights align by name; this measure decides it.
TEST(AlignedTensorFractionTest, CountsSameNamedSameSizedTensorBytesOnly) {
  const std::string v1 = ReadFile(fs::path(EDGEFLEET_TEST_DATA_DIR) / "classifier_v1.onnx");
  const std::string v2 = ReadFile(fs::path(EDGEFLEET_TEST_DATA_DIR) / "classifier_v2.onnx");
  const double same_layout = AlignedTensorFraction(v1, v2);
  EXPECT_GT(same_layout, 0.5) << "the classifier is mostly weights";
  EXPECT_LT(same_layout, 1.0) << "graph structure is not tensor bytes";
  EXPECT_DOUBLE_EQ(AlignedTensorFraction(v1, v1), same_layout);
  EXPECT_EQ(AlignedTensorFraction("not an onnx model", v2), 0);
  EXPECT_EQ(AlignedTensorFraction(v1, std::string(1000, 'x')), 0);
  const std::string conv = ReadFile(fs::path(EDGEFLEET_TEST_DATA_DIR) / "conv_v1.onnx");
  EXPECT_EQ(AlignedTensorFraction(conv, v2), 0)
      << "no tensor of the classifier exists in the conv model";
}

}  // namespace
}  // namespace edgefleet::delta::internal
