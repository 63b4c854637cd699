#include "common/crypto/openssl_error.h"

#include <openssl/err.h>

namespace edgefleet::crypto::internal {

std::string ConsumeOpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    out += out.empty() ? ": " : "; ";
    out += buf;
  }
  return out;
}

}  // namespace edgefleet::crypto::internal
