#include "cli/output.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace edgefleet::cli {

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("render JSON: ", status.ToString()));
  }
  return json;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  google::protobuf::Timestamp whole = ts;
  whole.set_nanos(0);  // second precision is enough for people
  return google::protobuf::util::TimeUtil::ToString(whole);
}

std::string ShortEnumName(const std::string& full_name, int prefix_words) {
  size_t pos = 0;
  for (int i = 0; i < prefix_words; ++i) {
    pos = full_name.find('_', pos);
    if (pos == std::string::npos) return full_name;
    ++pos;
  }
  return full_name.substr(pos);
}

}  // namespace edgefleet::cli
