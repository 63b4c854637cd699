#include "server/store/paging.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace edgefleet::server {
namespace {

// Tokens are "edgefleet-page:<call>:<key>", web-safe base64: opaque to clients, checkable here.
std::string TokenPrefix(const std::string& call) {
  return absl::StrCat("edgefleet-page:", call, ":");
}

}  // namespace

absl::StatusOr<PageRequest> ReadPageRequest(const std::string& call, uint32_t page_size,
                                            const std::string& page_token,
                                            absl::string_view field_prefix) {
  PageRequest page;
  if (page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(field_prefix, "page_size ", page_size,
                                                   " is over the limit of ", kMaxPageSize));
  }
  page.size = page_size == 0 ? kDefaultPageSize : page_size;
  if (page_token.empty()) return page;
  std::string decoded;
  const std::string prefix = TokenPrefix(call);
  if (!absl::WebSafeBase64Unescape(page_token, &decoded) || !absl::StartsWith(decoded, prefix) ||
      decoded.size() == prefix.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field_prefix, "page_token is not a page token of ", call));
  }
  page.after = decoded.substr(prefix.size());
  return page;
}

std::string NextPageToken(const std::string& call, const std::string& next_after) {
  if (next_after.empty()) return "";
  return absl::WebSafeBase64Escape(absl::StrCat(TokenPrefix(call), next_after));
}

}  // namespace edgefleet::server
