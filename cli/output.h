// Rendering of edgefleetctl results: aligned text tables for people, protobuf JSON for scripts.
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace edgefleet::cli {

enum class OutputFormat { kTable, kJson };

// Columns padded to their widest cell and separated by three spaces; the last column is not
// padded, so lines carry no trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  // Missing cells render empty; extra cells are an error in the caller and are dropped.
  void AddRow(std::vector<std::string> cells);
  void Render(std::ostream& out) const;
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// "Key:   value" lines with the values aligned, for single objects.
void RenderFields(const std::vector<std::pair<std::string, std::string>>& fields,
                  std::ostream& out);

// The protobuf JSON mapping of `message`, indented, with default-valued fields included.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// RFC 3339 UTC, or "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);

// "DEVICE_STATUS_ACTIVE" -> "ACTIVE": drops the enum's type prefix (everything up to the
// `prefix_words`-th underscore).
std::string ShortEnumName(const std::string& full_name, int prefix_words);

}  // namespace edgefleet::cli
