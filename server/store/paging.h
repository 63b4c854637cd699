// Cursor pagination for every list call: one page-size rule and one opaque page token. Repos
// read a page with keyset pagination (`WHERE key > after ORDER BY key LIMIT n + 1`), which stays
// free of duplicates and gaps while rows are inserted, unlike OFFSET.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edgefleet::server {

inline constexpr uint32_t kDefaultPageSize = 100;
inline constexpr uint32_t kMaxPageSize = 1000;

// Where a page starts and how long it is.
struct PageRequest {
  std::string after;  // the last key of the previous page; empty for the first page
  size_t size = kDefaultPageSize;
};

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_after;  // the key to continue after; empty on the last page
};

// The page a list call asks for. `call` names the list ("ListDevices"): a token is valid only
// for the call that issued it. page_size 0 means kDefaultPageSize; above kMaxPageSize, or a
// token that is not one of ours, is InvalidArgument. Errors name the fields with
// `field_prefix` in front ("target_" for target_page_size).
absl::StatusOr<PageRequest> ReadPageRequest(const std::string& call, uint32_t page_size,
                                            const std::string& page_token,
                                            absl::string_view field_prefix = "");
// The token that continues `call` after `next_after`; empty when `next_after` is (last page).
std::string NextPageToken(const std::string& call, const std::string& next_after);

// Ends a page read with one row too many (`size + 1` asked for): drops the extra row and records
// where the next page starts. `key` gives an item's key.
template <typename T, typename Key>
Page<T> FinishPage(std::vector<T> rows, size_t size, Key key) {
  Page<T> page;
  if (rows.size() > size) {
    rows.resize(size);
    page.next_after = key(rows.back());
  }
  page.items = std::move(rows);
  return page;
}

}  // namespace edgefleet::server
