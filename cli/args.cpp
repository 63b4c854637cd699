#include "cli/args.h"

#include "absl/strings/str_cat.h"

namespace edgefleet::cli {
namespace {

std::string CanonicalName(const std::string& name) {
  if (name == "h") return "help";
  return name;
}

}  // namespace

std::optional<std::string> ParsedArgs::Get(const std::string& name) const {
  auto it = flags.find(name);
  if (it == flags.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::set<std::string>& boolean_flags,
                                     const std::set<std::string>& known_flags) {
  ParsedArgs out;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      out.positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    // "--name", "--name=value", "-o", "-o=value"; a single dash is only for one-letter flags.
    const bool long_form = arg.starts_with("--");
    std::string body = arg.substr(long_form ? 2 : 1);
    std::optional<std::string> value;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      body.resize(eq);
    }
    if (body.empty() || (!long_form && body.size() != 1)) {
      return absl::InvalidArgumentError(absl::StrCat("malformed flag '", arg, "'"));
    }
    const std::string name = CanonicalName(body);
    if (!known_flags.empty() && !known_flags.contains(name) && !boolean_flags.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (boolean_flags.contains(name)) {
      if (value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      }
      out.flags[name].push_back("true");
      continue;
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    out.flags[name].push_back(*value);
  }
  return out;
}

absl::Status CheckAllowedFlags(const ParsedArgs& args, const std::set<std::string>& allowed) {
  for (const auto& [name, values] : args.flags) {
    if (!allowed.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::cli
