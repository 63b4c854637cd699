#include "cli/output.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace edgefleet::cli {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Render(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) widths[c] = headers_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size(); ++c) {
      text += cells[c];
      if (c + 1 < cells.size()) text += std::string(widths[c] - cells[c].size() + 3, ' ');
    }
    // Trailing empty cells would otherwise leave trailing spaces.
    text.erase(text.find_last_not_of(' ') + 1);
    out << text << '\n';
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
}

void RenderFields(const std::vector<std::pair<std::string, std::string>>& fields,
                  std::ostream& out) {
  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size() + 1);
  for (const auto& [key, value] : fields) {
    std::string label = key + ":";
    out << label << std::string(width - label.size() + 2, ' ') << value << '\n';
  }
}

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
