// How a CLI prints results: aligned text for people, JSON for scripts (`-o table|json`).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace edgefleet::cli {

enum class OutputFormat { kTable, kJson };

// The value of `-o`; InvalidArgument names the bad value.
inline absl::StatusOr<OutputFormat> ParseOutputFormat(std::string_view value) {
  if (value == "table") return OutputFormat::kTable;
  if (value == "json") return OutputFormat::kJson;
  return absl::InvalidArgumentError(absl::StrCat(
      "-o must be table or json, not '", absl::string_view(value.data(), value.size()), "'"));
}

}  // namespace edgefleet::cli
