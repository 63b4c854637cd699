// The device's TLS identity on disk: key.pem and cert.pem in the state directory, replaced
// together when the certificate is renewed, so that a crash at any point leaves a matching
// key and certificate (the old pair or the new one), never one of each.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace edgefleet::agent {

inline constexpr char kKeyFile[] = "key.pem";
inline constexpr char kCertificateFile[] = "cert.pem";

// Writes key.pem.next, then cert.pem.next (the commit point: from then on the new pair wins),
// then renames key.pem.next and cert.pem.next over the current files, each step durable.
absl::Status ReplaceIdentity(const std::string& state_dir, const std::string& key_pem,
                             const std::string& certificate_pem);

// Completes or discards a ReplaceIdentity that a crash interrupted: with cert.pem.next present
// the new pair is moved into place, otherwise a lone key.pem.next is removed. Call before
// reading key.pem and cert.pem.
absl::Status RecoverIdentity(const std::string& state_dir);

}  // namespace edgefleet::agent
