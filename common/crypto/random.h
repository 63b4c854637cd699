// Cryptographically secure random bytes and tokens (API keys, enrollment tokens, serials).
#pragma once

#include <cstddef>
#include <string>

namespace edgefleet::crypto {

// `n` bytes from the OpenSSL CSPRNG. Aborts if the CSPRNG fails, since no caller can
// safely continue without randomness.
std::string RandomBytes(size_t n);

// `entropy_bytes` random bytes as URL-safe base64 without padding ([A-Za-z0-9_-]).
std::string RandomToken(size_t entropy_bytes);

}  // namespace edgefleet::crypto
