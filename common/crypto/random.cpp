#include "common/crypto/random.h"

#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "absl/strings/escaping.h"

namespace edgefleet::crypto {

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t done = 0;
  while (done < n) {
    // RAND_bytes takes an int length; chunk so huge requests cannot overflow it.
    size_t chunk = std::min<size_t>(n - done, INT_MAX);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data() + done), static_cast<int>(chunk)) !=
        1) {
      std::abort();
    }
    done += chunk;
  }
  return out;
}

std::string RandomToken(size_t entropy_bytes) {
  // WebSafeBase64Escape uses '-' and '_' and emits no '=' padding.
  return absl::WebSafeBase64Escape(RandomBytes(entropy_bytes));
}

}  // namespace edgefleet::crypto
