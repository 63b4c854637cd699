#include "common/core/names.h"

#include "absl/strings/str_cat.h"

namespace edgefleet {
namespace {

constexpr size_t kMaxNameLength = 63;

absl::Status ValidateName(const char* what, std::string_view value, bool allow_upper,
                          std::string_view extra) {
  if (value.empty() || value.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be 1 to ", kMaxNameLength, " characters"));
  }
  if (value.front() == '.') {
    // ".", ".." and hidden names would mean something else as a directory name.
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", std::string(value), "' must not start with a dot"));
  }
  for (char c : value) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || (allow_upper && c >= 'A' && c <= 'Z') ||
              extra.find(c) != std::string_view::npos;
    if (!ok) {
      // The value may hold control characters; the message names the rule, not the bytes.
      return absl::InvalidArgumentError(absl::StrCat(
          what, " has a character outside ", allow_upper ? "[A-Za-z0-9._+-]" : "[a-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelName(std::string_view name) {
  return ValidateName("model_name", name, false, "");
}

absl::Status ValidateVersion(std::string_view version) {
  return ValidateName("version", version, true, "+");
}

absl::Status ValidateApiTokenName(std::string_view name) {
  return ValidateName("name", name, false, "");
}

}  // namespace edgefleet
