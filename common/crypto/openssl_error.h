// Internal to common/crypto: turns the OpenSSL thread-local error queue into message text.
#pragma once

#include <string>

namespace edgefleet::crypto::internal {

// Drains the calling thread's OpenSSL error queue; returns "" when it was empty, else
// ": reason; reason" ready to append to a status message.
std::string ConsumeOpenSslErrors();

}  // namespace edgefleet::crypto::internal
