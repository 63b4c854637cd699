// Entry points of the fuzz targets for hostile input outside the delta decoders: signed release
// metadata, the ONNX wire-format walkers, REST JSON request bodies and config files. Shared by the
// libFuzzer targets and the regression replay test. Each returns the status the code under test
// gave (a refusal is fine) and aborts, with a message on stderr, when an invariant the code
// promises is broken (e.g. a decoder accepting bytes its encoder would not produce).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace edgefleet::fuzz {

// First byte picks what the rest is: 0 a serialized SignedManifest verified against a keyring
// (root + one delegated release key); 1 canonical manifest bytes, signed here with the release
// key and verified (so expiry and rollback checks are reached); 2 canonical delegation bytes,
// signed here with the root and adopted by a fresh keyring; 3 canonical timestamp bytes, signed
// here with the release key and verified; 4 a serialized ReleaseTrustState restored.
absl::Status RunManifest(std::string_view input);
// Valid inputs of every kind above (name, bytes): the seed corpus.
std::vector<std::pair<std::string, std::string>> ManifestSeeds();

// ParseOnnxLayout, ParseOnnxSignature and AlignedTensorFraction against a fixed model, on the
// input as an ONNX ModelProto.
absl::Status RunOnnxWalker(std::string_view input);

// First byte picks an admin call with a JSON body (modulo their count); the rest is the body:
// parsed as the REST gateway does, bounded (CheckRequestLimits) and validated where the request
// has a pure validator (rollouts, names, label selectors).
absl::Status RunRestJson(std::string_view input);

// First byte: even an AgentConfig, odd a ServerConfig. The rest up to the first NUL is the config
// file's JSON; after it, NUL-separated command-line arguments (--config is dropped: no files).
absl::Status RunConfig(std::string_view input);

// Aborts with `what` when `condition` is false: the invariant checks of the targets above.
void Require(bool condition, std::string_view what);

}  // namespace edgefleet::fuzz
