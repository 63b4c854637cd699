#include "server/api/client_identity_cache.h"

#include <utility>

#include "common/crypto/certificate_authority.h"
#include "common/crypto/sha256.h"

namespace edgefleet::server {

absl::StatusOr<ClientIdentityCache::Identity> ClientIdentityCache::Get(
    std::string_view certificate_pem) {
  std::string key = crypto::Sha256Bytes(certificate_pem);
  {
    std::lock_guard lock(mu_);
    if (auto it = current_.find(key); it != current_.end()) return it->second;
    if (auto it = previous_.find(key); it != previous_.end()) {
      Identity identity = it->second;
      previous_.erase(it);
      if (current_.size() >= capacity_) previous_ = std::exchange(current_, {});
      current_.emplace(std::move(key), identity);
      return identity;
    }
  }
  auto info = crypto::ParseCertificate(certificate_pem);
  if (!info.ok()) return info.status();
  Identity identity{.common_name = info->common_name, .serial_hex = info->serial_hex};
  std::lock_guard lock(mu_);
  if (current_.size() >= capacity_) previous_ = std::exchange(current_, {});
  current_.insert_or_assign(std::move(key), identity);
  return identity;
}

}  // namespace edgefleet::server
