// Writes the generated seed corpora: valid patches against the fixed base files for the delta
// fuzzers, signed release metadata for fuzz_manifest and the fixed models for fuzz_onnx_walker.
// (The JSON targets' seeds are checked in under tests/fuzz/seeds/.)
//   delta_fuzz_seeds <dir>   creates <dir>/bsdiff40, container, tensor, manifest, onnx_walker
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "common/delta/delta.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/fuzz/input_targets.h"

namespace {

using edgefleet::delta::Codec;

bool WriteSeed(const std::filesystem::path& dir, const std::string& name,
               const std::string& old_data, const std::string& new_data, Codec codec) {
  edgefleet::delta::StringSink patch;
  absl::StatusOr<edgefleet::delta::DiffResult> result =
      edgefleet::delta::Diff(old_data, new_data, codec, patch, {.zstd_level = 3});
  if (!result.ok()) {
    std::cerr << name << ": " << result.status() << "\n";
    return false;
  }
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << patch.data();
  return true;
}

void WriteFile(const std::filesystem::path& dir, const std::string& name, const std::string& data) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << data;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: delta_fuzz_seeds <dir>\n";
    return 2;
  }
  namespace fuzz = edgefleet::delta::fuzz;
  const std::filesystem::path root = argv[1];
  bool ok = true;
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    const auto dir = root / (codec == Codec::kBsdiff40 ? "bsdiff40" : "container");
    ok &= WriteSeed(dir, "edit", fuzz::OldBlob(), fuzz::NewBlob(), codec);
    ok &= WriteSeed(dir, "identical", fuzz::OldBlob(), fuzz::OldBlob(), codec);
    ok &= WriteSeed(dir, "empty_new", fuzz::OldBlob(), "", codec);
    ok &= WriteSeed(dir, "append", fuzz::OldBlob(), fuzz::OldBlob() + "tail bytes", codec);
  }
  ok &= WriteSeed(root / "tensor", "finetune", fuzz::OldModel(), fuzz::NewModel(), Codec::kTensor);
  ok &= WriteSeed(root / "tensor", "identical", fuzz::OldModel(), fuzz::OldModel(), Codec::kTensor);
  ok &= WriteSeed(root / "tensor", "pruned", fuzz::OldModel(), fuzz::PrunedModel(), Codec::kTensor);
  ok &= WriteSeed(root / "tensor", "quantized", fuzz::OldModel(), fuzz::QuantizedModel(),
                  Codec::kTensor);
  ok &= WriteSeed(root / "tensor", "sparse", fuzz::OldModel(), fuzz::SparselyChangedModel(),
                  Codec::kTensor);
  ok &= WriteSeed(root / "tensor", "low_rank", fuzz::OldModel(), fuzz::LowRankModel(),
                  Codec::kTensor);
  for (const auto& [name, bytes] : edgefleet::fuzz::ManifestSeeds()) {
    WriteFile(root / "manifest", name, bytes);
  }
  WriteFile(root / "onnx_walker", "old", fuzz::OldModel());
  WriteFile(root / "onnx_walker", "new", fuzz::NewModel());
  WriteFile(root / "onnx_walker", "low_rank", fuzz::LowRankModel());
  return ok ? 0 : 1;
}
