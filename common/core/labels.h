// Label maps and "k=v,k2=v2" selectors, shared by the server, agent and CLI.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet {

using Labels = std::map<std::string, std::string>;

// Parses "k=v,k2=v2" (whitespace around items ignored). Keys must be non-empty and made of
// [A-Za-z0-9._/-]; values of [A-Za-z0-9._/-] or empty. An empty string is the empty map.
absl::StatusOr<Labels> ParseLabelSelector(std::string_view text);

// Renders labels as "k=v,k2=v2" in key order.
std::string FormatLabels(const Labels& labels);

// True when every key/value of `selector` is present in `labels`.
bool SelectorMatches(const Labels& selector, const Labels& labels);

}  // namespace edgefleet
