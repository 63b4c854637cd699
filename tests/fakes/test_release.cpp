#include "tests/fakes/test_release.h"

#include <fstream>
#include <iterator>
#include <sstream>

#include "common/crypto/sha256.h"
#include "common/manifest/manifest.h"

namespace edgefleet::fakes {

absl::StatusOr<ReleaseKey> ReleaseKey::Generate() {
  auto pair = crypto::GenerateEd25519KeyPair();
  if (!pair.ok()) return pair.status();
  auto signer = crypto::LoadEd25519Signer(pair->private_key_pem);
  if (!signer.ok()) return signer.status();
  auto verifier = crypto::LoadEd25519Verifier(pair->public_key_pem);
  if (!verifier.ok()) return verifier.status();
  ReleaseKey key;
  key.signer_ = *std::move(signer);
  key.verifier_ = *std::move(verifier);
  return key;
}

absl::StatusOr<v1::DesiredModel> MakeDesired(const ReleaseSpec& spec, const crypto::Signer& key) {
  const std::string sha = crypto::Sha256Bytes(spec.artifact);
  v1::ReleaseManifest manifest;
  manifest.set_model_name(spec.model_name);
  manifest.set_version(spec.version);
  manifest.set_artifact_sha256(sha);
  manifest.set_artifact_size_bytes(spec.artifact.size());
  manifest.set_format(v1::MODEL_FORMAT_ONNX);
  manifest.set_metadata_version(spec.metadata_version);
  manifest.mutable_expires_at()->set_seconds(ToUnixSeconds(spec.expires_at));
  if (spec.reference) manifest.set_reference_profile_sha256(spec.reference->profile_sha256());
  auto signed_manifest = manifest::Sign(manifest, key);
  if (!signed_manifest.ok()) return signed_manifest.status();

  v1::DesiredModel desired;
  *desired.mutable_manifest() = *std::move(signed_manifest);
  if (spec.reference) *desired.mutable_reference() = *spec.reference;
  v1::ModelVersion& metadata = *desired.mutable_metadata();
  metadata.set_model_name(spec.model_name);
  metadata.set_version(spec.version);
  metadata.set_format(v1::MODEL_FORMAT_ONNX);
  metadata.set_artifact_sha256(sha);
  metadata.set_size_bytes(spec.artifact.size());
  metadata.set_metadata_version(spec.metadata_version);
  if (spec.declare_inputs) {
    v1::TensorSpec* input = metadata.add_inputs();
    input->set_name("input");
    input->add_shape(1);
    input->add_shape(4);
  }
  v1::TensorSpec* output = metadata.add_outputs();
  output->set_name("probs");
  output->add_shape(1);
  output->add_shape(3);
  return desired;
}

std::string TestDataPath(const std::string& file) {
  return std::string(EDGEFLEET_TEST_DATA_DIR) + "/" + file;
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::map<std::string, ExpectedCase> LoadExpected() {
  std::ifstream in(TestDataPath("expected.txt"));
  std::map<std::string, ExpectedCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string file, kind, dims;
    agent::TensorData t;
    fields >> file >> kind >> t.name >> dims;
    std::istringstream dim_stream(dims);
    for (std::string dim; std::getline(dim_stream, dim, ',');) t.shape.push_back(std::stoll(dim));
    for (double v; fields >> v;) t.data.push_back(static_cast<float>(v));
    (kind == "input" ? cases[file].inputs : cases[file].outputs).push_back(std::move(t));
  }
  return cases;
}

}  // namespace edgefleet::fakes
