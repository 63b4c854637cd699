// The server's key material: device CA, TLS certificate and release signing key, created on
// first start under <data_dir>/keys (or supplied there by the operator) and reused afterwards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::server {

struct ServerIdentity {
  std::string ca_certificate_pem;
  std::string ca_private_key_pem;
  std::string server_certificate_pem;
  std::string server_private_key_pem;
  std::string release_private_key_pem;
  std::string release_public_key_pem;
  bool created = false;  // true when this start generated any of it
};

// Loads <data_dir>/keys/{ca,server,release}.* and creates what is missing. A server certificate
// is (re)issued for `tls_hosts` when absent or within a week of expiry.
absl::StatusOr<ServerIdentity> LoadOrCreateServerIdentity(const std::string& data_dir,
                                                          const std::vector<std::string>& tls_hosts,
                                                          int64_t now_unix);

}  // namespace edgefleet::server
