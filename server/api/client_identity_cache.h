// What a device's client certificate says (its common name, the device id, and its serial),
// remembered per certificate so that a device's calls do not parse it again each time. gRPC has
// verified the chain before a call reaches us; parsing the PEM with OpenSSL 3 (its decoder
// framework, the public key included) took a fifth of the server's CPU at a few thousand
// telemetry uploads a second.
//
// Only the parse is cached, never a decision: whether the certificate is still the device's and
// the device still active is read on every call (DeviceApi::Authorize), so a revocation applies
// to the next call.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace edgefleet::server {

class ClientIdentityCache {
 public:
  struct Identity {
    std::string common_name;
    std::string serial_hex;  // lowercase
  };

  // Holds at most about 2 x `capacity` certificates (about 150 bytes each).
  explicit ClientIdentityCache(size_t capacity = 65536) : capacity_(capacity) {}

  // InvalidArgument for a certificate that does not parse.
  absl::StatusOr<Identity> Get(std::string_view certificate_pem);

 private:
  // Keyed by the SHA-256 of the PEM: the exact certificate, in 32 bytes. Two generations bound
  // the memory: when `current_` is full it becomes `previous_`, and a certificate found only in
  // `previous_` moves back, so the certificates in use stay and the others age out.
  using Map = absl::flat_hash_map<std::string, Identity>;
  const size_t capacity_;
  std::mutex mu_;
  Map current_;
  Map previous_;
};

}  // namespace edgefleet::server
