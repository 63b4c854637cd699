#include "common/core/labels.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edgefleet {
namespace {

bool IsLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '/';
}

bool IsLabelText(absl::string_view s) {
  for (char c : s) {
    if (!IsLabelChar(c)) return false;
  }
  return s.size() <= 63;
}

}  // namespace

absl::StatusOr<Labels> ParseLabelSelector(std::string_view selector) {
  // Debian's abseil has its own string_view type; convert once at the boundary.
  absl::string_view text(selector.data(), selector.size());
  Labels labels;
  if (absl::StripAsciiWhitespace(text).empty()) return labels;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("label '", item, "' is not of the form key=value"));
    }
    absl::string_view key = item.substr(0, eq);
    absl::string_view value = item.substr(eq + 1);
    if (key.empty() || !IsLabelText(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label key '", key, "' is empty or has characters outside [A-Za-z0-9._/-]"));
    }
    if (!IsLabelText(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label value '", value, "' has characters outside [A-Za-z0-9._/-]"));
    }
    labels[std::string(key)] = std::string(value);
  }
  return labels;
}

std::string FormatLabels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    absl::StrAppend(&out, k, "=", v);
  }
  return out;
}

bool SelectorMatches(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace edgefleet
