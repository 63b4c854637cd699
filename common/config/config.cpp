#include "common/config/config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "edgefleet/v1/config.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace edgefleet::config {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string FlagName(const FieldDescriptor& field) {
  return absl::StrReplaceAll(field.name(), {{"_", "-"}});
}

std::string EnvName(const FieldDescriptor& field) {
  return absl::StrCat("EDGEFLEET_", absl::AsciiStrToUpper(field.name()));
}

absl::Status SetField(const FieldDescriptor& field, const std::string& value,
                      const std::string& source, Message* config) {
  const auto* reflection = config->GetReflection();
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": '", value, "' is not a valid ", field.type_name()));
  };
  if (field.is_repeated()) {
    if (field.cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
      return absl::InternalError(
          absl::StrCat("config field ", field.name(), " is a repeated non-string"));
    }
    // A comma-separated list that replaces what an earlier source set.
    reflection->ClearField(config, &field);
    for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      reflection->AddString(config, &field, std::string(absl::StripAsciiWhitespace(item)));
    }
    return absl::OkStatus();
  }
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(config, &field, value);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetUInt32(config, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetUInt64(config, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return bad();
      reflection->SetBool(config, &field, v);
      return absl::OkStatus();
    }
    default:
      return absl::InternalError(
          absl::StrCat("config field ", field.name(), " has an unsupported type"));
  }
}

absl::Status LoadFile(const std::string& path, Message* config) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read config file ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (auto s = ParseJson(text.str(), config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseJson(const std::string& json, Message* config) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(json, config, options);
  if (!status.ok()) return absl::InvalidArgumentError(status.message().ToString());
  return absl::OkStatus();
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::Status Load(const std::vector<std::string>& args, const EnvLookup& env, Message* config) {
  const auto* descriptor = config->GetDescriptor();

  // Pair each flag with its value first, so --config can be honoured before everything else.
  std::vector<std::pair<std::string, std::string>> flags;
  std::optional<std::string> config_file = env("EDGEFLEET_CONFIG");
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2), value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    if (name == "config") {
      config_file = value;
    } else {
      flags.emplace_back(name, value);
    }
  }

  if (config_file && !config_file->empty()) {
    if (auto s = LoadFile(*config_file, config); !s.ok()) return s;
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor& field = *descriptor->field(i);
    if (auto value = env(EnvName(field))) {
      if (auto s = SetField(field, *value, EnvName(field), config); !s.ok()) return s;
    }
  }
  for (const auto& [name, value] : flags) {
    const FieldDescriptor* field = nullptr;
    for (int i = 0; i < descriptor->field_count() && field == nullptr; ++i) {
      if (FlagName(*descriptor->field(i)) == name) field = descriptor->field(i);
    }
    if (field == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (auto s = SetField(*field, value, "--" + name, config); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string Usage(const Message& defaults) {
  std::string out =
      "  --config FILE (EDGEFLEET_CONFIG)\n      JSON file with any of the settings below\n";
  const auto* descriptor = defaults.GetDescriptor();
  const auto* reflection = defaults.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor& field = *descriptor->field(i);
    absl::StrAppend(&out, "  --", FlagName(field), " (", EnvName(field), ")\n      ",
                    field.options().GetExtension(v1::help));
    if (field.is_repeated()) {
      std::vector<std::string> items;
      for (int j = 0; j < reflection->FieldSize(defaults, &field); ++j) {
        items.push_back(reflection->GetRepeatedString(defaults, &field, j));
      }
      if (!items.empty()) absl::StrAppend(&out, " (default: ", absl::StrJoin(items, ","), ")");
    } else if (reflection->HasField(defaults, &field)) {
      // Proto3 scalars have no presence: a value other than zero/empty is a default.
      std::string value;
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        value = reflection->GetString(defaults, &field);
      } else {
        google::protobuf::TextFormat::PrintFieldValueToString(defaults, &field, -1, &value);
      }
      absl::StrAppend(&out, " (default: ", value, ")");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace edgefleet::config
