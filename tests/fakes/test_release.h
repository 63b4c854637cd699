// Test helpers for releases: a throwaway Ed25519 release key, signed manifests and the
// DesiredModel a server would send, plus the generated ONNX test models and their expected
// outputs (tests/models/make_models.py).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/engine/inference_engine.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/device.pb.h"

namespace edgefleet::fakes {

// A freshly generated release key pair.
class ReleaseKey {
 public:
  static absl::StatusOr<ReleaseKey> Generate();
  const crypto::Signer& signer() const { return *signer_; }
  const crypto::Verifier& verifier() const { return *verifier_; }

 private:
  std::shared_ptr<crypto::Signer> signer_;
  std::shared_ptr<crypto::Verifier> verifier_;
};

struct ReleaseSpec {
  std::string model_name = "classifier";
  std::string version;
  std::string artifact;  // the bytes that should be served
  uint64_t metadata_version = 1;
  Clock::TimePoint expires_at;
  // Declared classifier spec: input "input" [1,4], output "probs" [1,3]. Clear to omit inputs.
  bool declare_inputs = true;
  // Sent with the release (DesiredModel.reference), its SHA-256 signed in the manifest.
  std::optional<v1::ReferenceProfile> reference;
};

// Signs the manifest for `spec` with `key` and pairs it with matching metadata.
absl::StatusOr<v1::DesiredModel> MakeDesired(const ReleaseSpec& spec, const crypto::Signer& key);

// --- generated test models ---
std::string TestDataPath(const std::string& file);
// The whole file; empty on error (the test then fails on its content).
std::string ReadFileBytes(const std::string& path);

struct ExpectedCase {
  std::vector<agent::TensorData> inputs;
  std::vector<agent::TensorData> outputs;
};
// expected.txt by model file name ("classifier_v1.onnx" ...).
std::map<std::string, ExpectedCase> LoadExpected();

}  // namespace edgefleet::fakes
