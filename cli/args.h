// A small command-line parser for edgefleetctl: positionals plus repeatable --flag value /
// --flag=value options that may appear anywhere on the line.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::cli {

struct ParsedArgs {
  std::vector<std::string> positionals;
  // Flag name without leading dashes ("-o" is stored as "o", "-h" as "help") -> every value.
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.contains(name); }
  // The last value given for `name`, if any (a later flag overrides an earlier one).
  std::optional<std::string> Get(const std::string& name) const;
  // Every value given for `name`, in order; empty when absent.
  std::vector<std::string> GetAll(const std::string& name) const;
};

// Splits `args` (argv without the program name). Every flag takes a value except those in
// `boolean_flags`, which take none. "--" ends flag parsing. -h means --help; -o is
// its own flag (not --output, which model push uses for tensor specs).
// When `known_flags` is non-empty, a flag in neither set is kInvalidArgument ("unknown flag"), so
// a typo is not mistaken for a flag that swallows the next word. A missing value is also
// kInvalidArgument.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::set<std::string>& boolean_flags = {"help"},
                                     const std::set<std::string>& known_flags = {});

// kInvalidArgument naming the first flag in `args` that is not in `allowed`.
absl::Status CheckAllowedFlags(const ParsedArgs& args, const std::set<std::string>& allowed);

}  // namespace edgefleet::cli
