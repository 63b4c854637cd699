#include "server/store/internal/json.h"

#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace edgefleet::server::internal {

namespace pb = google::protobuf;

std::string LabelsToJson(const Labels& labels) {
  pb::Struct s;
  for (const auto& [key, value] : labels) (*s.mutable_fields())[key].set_string_value(value);
  return MessageToJson(s);
}

absl::StatusOr<Labels> LabelsFromJson(absl::string_view json) {
  pb::Struct s;
  if (absl::Status st = MessageFromJson(json, &s); !st.ok()) return st;
  Labels labels;
  for (const auto& [key, value] : s.fields()) {
    if (value.kind_case() != pb::Value::kStringValue) {
      return absl::DataLossError(absl::StrCat("label '", key, "' is not a string"));
    }
    labels.emplace(key, value.string_value());
  }
  return labels;
}

std::string StringsToJson(const std::vector<std::string>& values) {
  pb::ListValue list;
  for (const auto& v : values) list.add_values()->set_string_value(v);
  return MessageToJson(list);
}

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string MessageToJson(const pb::Message& message) {
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  // Serializing a well-formed in-memory message cannot fail.
  (void)pb::util::MessageToJsonString(message, &out, options);
  return out;
}

absl::Status MessageFromJson(absl::string_view json, pb::Message* message) {
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // rows written by a newer schema stay readable
  auto status =
      pb::util::JsonStringToMessage(pb::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat("stored JSON is not a valid ",
                                            message->GetDescriptor()->name(), ": ",
                                            status.message().as_string()));
  }
  return absl::OkStatus();
}

std::string EnumToDb(const pb::EnumDescriptor* descriptor, int value, absl::string_view prefix) {
  const pb::EnumValueDescriptor* v = descriptor->FindValueByNumber(value);
  if (v == nullptr) return "unspecified";
  absl::string_view name = v->name();
  if (absl::StartsWith(name, prefix)) name.remove_prefix(prefix.size());
  return absl::AsciiStrToLower(name);
}

int EnumFromDb(const pb::EnumDescriptor* descriptor, absl::string_view text,
               absl::string_view prefix) {
  const pb::EnumValueDescriptor* v =
      descriptor->FindValueByName(absl::StrCat(prefix, absl::AsciiStrToUpper(text)));
  return v == nullptr ? 0 : v->number();
}

}  // namespace edgefleet::server::internal
